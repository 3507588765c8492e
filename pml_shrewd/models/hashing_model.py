"""A timm backbone with a hash head: images -> continuous codes in [0, 1]^K."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from typing import Any

import timm
import torch
from timm.data import create_transform, resolve_data_config
from torch import nn
from torchvision import transforms as T

from .hash_head import HashHead


def _adapt_resnet_stem(backbone: nn.Module) -> bool:
    """Make a timm ResNet keep 32x32 resolution: 3x3 stride-1 first conv, no max-pool.

    Why: an ImageNet stem (7x7 stride 2 + max-pool) shrinks a CIFAR image to 8x8
    before the first block; CIFAR ResNets (He et al. 2016) use a 3x3 stride-1 stem.
    Returns False for backbones that are not timm ResNets.
    """
    from timm.models.resnet import ResNet

    if not isinstance(backbone, ResNet):
        return False
    conv1 = backbone.conv1
    if isinstance(conv1, nn.Conv2d):
        # Plain stem: a new 3x3 stride-1 conv (pretrained 7x7 stem weights do not fit).
        backbone.conv1 = nn.Conv2d(conv1.in_channels, conv1.out_channels, 3, 1, 1, bias=False)
    else:
        # Deep stem (resnet*d / *t): keep the 3x3 convs and their weights, remove the stride.
        first = next(m for m in conv1.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)
    backbone.maxpool = nn.Identity()
    return True


class HashingModel(nn.Module):
    """Any timm backbone + :class:`HashHead`: ``forward(x)`` gives codes in ``[0, 1]^K``.

    The network ``f`` of SHREWD / SHRED (Arponen & Bishop, arXiv 2005.04917): a
    feature extractor, a linear hash layer with a sigmoid, and (for SHRED) a linear
    classifier on the continuous code, exposed as ``model.classifier``.

    Args:
        backbone: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        num_bits: code length K.
        pretrained: load timm's pretrained weights (needs the Hugging Face hub online).
        pretrained_file: a local weights file (``.pth``/``.safetensors``) loaded through
            timm's ``pretrained_cfg_overlay=dict(file=...)``; works offline.
        num_classes: size of the SHRED classifier on the code (0: none).
        small_images: adapt to 32x32 inputs (CIFAR). timm ResNets get a 3x3 stride-1
            stem and no max-pool and the transforms keep 32x32; other families keep
            their stem and the transforms upsample the input to the model's default
            input size instead (with a warning), unless ``image_size`` is given.
        hidden_dim: optional hidden width of an MLP hash head.
        batch_norm: BatchNorm on the hash layer's pre-activations (see :class:`HashHead`).
        image_size: override the transforms' input size (square side).
        **timm_kwargs: passed to ``timm.create_model`` (e.g. ``drop_rate``).

    Example::

        model = HashingModel("resnet18", num_bits=64, small_images=True, num_classes=100)
        codes = model(torch.randn(4, 3, 32, 32))   # (4, 64) in [0, 1]
        tf = model.transform(train=True)           # timm/torchvision transform for PIL images
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        num_bits: int = 64,
        pretrained: bool = False,
        pretrained_file: str | os.PathLike | None = None,
        num_classes: int = 0,
        small_images: bool = False,
        hidden_dim: int | None = None,
        batch_norm: bool = False,
        image_size: int | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, str) or not timm.is_model(backbone):
            raise ValueError(f"HashingModel: unknown timm backbone {backbone!r} (see timm.list_models())")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"HashingModel: image_size must be a positive int, got {image_size!r}")
        create_kwargs = dict(timm_kwargs)
        if pretrained_file is not None:
            pretrained_file = os.fspath(pretrained_file)
            if not os.path.isfile(pretrained_file):
                raise FileNotFoundError(f"HashingModel: pretrained_file {pretrained_file!r} does not exist")
            pretrained = True
            overlay = dict(create_kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay["file"] = pretrained_file
            create_kwargs["pretrained_cfg_overlay"] = overlay
        self.backbone = timm.create_model(
            backbone, pretrained=bool(pretrained), num_classes=0, **create_kwargs
        )
        if pretrained_file is not None:
            self._check_weights_file(pretrained_file)

        data_config = resolve_data_config({}, model=self.backbone)
        adapted = False
        if small_images:
            adapted = _adapt_resnet_stem(self.backbone)
            if adapted:
                data_config.update(input_size=(3, 32, 32), crop_pct=1.0)
            elif image_size is None:
                warnings.warn(
                    f"HashingModel: small_images=True has no stem adaptation for {backbone!r} "
                    f"(timm ResNets only); inputs are upsampled to {data_config['input_size'][1:]} instead",
                    stacklevel=2,
                )
        if image_size is not None:
            data_config.update(input_size=(3, image_size, image_size))
        self.data_config: dict[str, Any] = data_config
        self.small_images = bool(small_images)
        self.stem_adapted = adapted

        self.head = HashHead(
            self.backbone.num_features,
            num_bits,
            hidden_dim=hidden_dim,
            num_classes=num_classes,
            batch_norm=batch_norm,
        )
        self.num_bits = num_bits
        self.num_classes = num_classes
        # Plain data enough to rebuild the architecture (weights come from a checkpoint).
        self.config: dict[str, Any] = dict(
            backbone=backbone,
            num_bits=num_bits,
            num_classes=num_classes,
            small_images=bool(small_images),
            hidden_dim=hidden_dim,
            batch_norm=bool(batch_norm),
            image_size=image_size,
            **{k: v for k, v in timm_kwargs.items() if k != "pretrained_cfg_overlay"},
        )

    def _check_weights_file(self, path: str) -> None:
        # timm loads with strict=False once the classifier is dropped: catch a wrong file here.
        from timm.models import load_state_dict

        file_keys = set(load_state_dict(path).keys())
        missing = [k for k in self.backbone.state_dict() if k not in file_keys]
        if missing:
            raise ValueError(
                f"HashingModel: weights file {path!r} lacks {len(missing)} backbone tensors "
                f"(e.g. {missing[:3]}); is it for a different architecture?"
            )

    @property
    def classifier(self) -> nn.Linear | None:
        """The linear classifier on the continuous code (``None`` when ``num_classes == 0``)."""
        return self.head.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of shape ``(N, backbone.num_features)``."""
        return self.backbone(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Continuous codes in ``[0, 1]`` of shape ``(N, num_bits)``."""
        return self.head(self.backbone(x))

    def transform(self, train: bool = False):
        """Input transform for PIL images built from ``data_config``.

        Small-image mode uses the CIFAR-standard pad-4 random crop and flip for
        training (timm's RandomResizedCrop is too aggressive at 32x32); otherwise
        ``timm.data.create_transform``.
        """
        cfg = self.data_config
        size = cfg["input_size"][1:]
        if self.small_images and self.stem_adapted:
            norm = [T.ToTensor(), T.Normalize(cfg["mean"], cfg["std"])]
            if train:
                return T.Compose(
                    [
                        T.Resize(size),
                        T.RandomCrop(size, padding=size[0] // 8),
                        T.RandomHorizontalFlip(),
                        *norm,
                    ]
                )
            return T.Compose([T.Resize(size), *norm])
        return create_transform(**cfg, is_training=train)


def create_hashing_model(
    name_or_config: str | Mapping[str, Any] | os.PathLike, **overrides: Any
) -> HashingModel:
    """Build a :class:`HashingModel` from a timm name, a config dict or a JSON file.

    Example::

        model = create_hashing_model("resnet50", num_bits=32)
        same = create_hashing_model(model.config)        # rebuild an architecture
        from_file = create_hashing_model("model.json", pretrained=False)
    """
    if isinstance(name_or_config, Mapping):
        config = dict(name_or_config)
    elif isinstance(name_or_config, (str, os.PathLike)) and str(name_or_config).endswith(".json"):
        with open(name_or_config) as f:
            config = json.load(f)
    elif isinstance(name_or_config, str):
        config = {"backbone": name_or_config}
    else:
        raise TypeError(
            f"create_hashing_model: expected a name, mapping or JSON path, got {name_or_config!r}"
        )
    config.update(overrides)
    return HashingModel(**config)
