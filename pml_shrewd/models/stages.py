"""A timm backbone cut between its stages: a frozen trunk whose activations are cached, and a
trained tail (the last stage(s) and the head conv), for partial fine-tuning on CPUs.

The trunk is timm's own feature-extraction API (``forward_intermediates`` up to the cut, with
``stop_early``); the tail runs the model's remaining stages, in the order its
``forward_features`` / ``forward_head`` run them, on the same module objects, so training the
tail trains the backbone in place and the whole model deploys as one.

Example::

    net = timm.create_model("tf_efficientnet_lite0", num_classes=0)
    trunk, tail = BackboneTrunk(net, train_stages=1), BackboneTail(net, train_stages=1)
    with torch.no_grad():
        maps = trunk(images)                 # (N, 192, H/16, W/16): cache these (float16)
    features = tail(maps)                    # == net(images) in eval mode
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _pair
from torch.overrides import TorchFunctionMode

from .hash_head import HashHead

# timm families whose stage order the tail knows: (stage container, modules after the stages
# inside forward_features). The stage list of each is what forward_intermediates indexes.
_FAMILIES = {
    "EfficientNet": (
        "blocks",
        ("conv_head", "bn2"),
    ),  # efficientnet_*, tf_efficientnet_lite*, mixnet, mnasnet
    "MobileNetV3": ("blocks", ()),  # mobilenetv3_*, lcnet, fbnetv3 (head conv after the pool)
    "ResNet": (None, ()),  # resnet*, resnext*, seresnet*: layer1..layer4
}


def _family(net: nn.Module) -> str:
    for cls in type(net).__mro__:
        if cls.__name__ in _FAMILIES:
            return cls.__name__
    raise ValueError(
        f"partial fine-tuning (train_stages) supports timm's {sorted(_FAMILIES)} families; "
        f"got {type(net).__name__}"
    )


def _stages(net: nn.Module) -> list[nn.Module]:
    container, _ = _FAMILIES[_family(net)]
    if container is None:  # ResNet
        return [net.layer1, net.layer2, net.layer3, net.layer4]
    return list(getattr(net, container))


def num_stages(net: nn.Module) -> int:
    """How many stages (block groups) the backbone has: the largest ``train_stages``."""
    return len(_stages(net))


def _check_train_stages(net: nn.Module, train_stages: int) -> int:
    total = num_stages(net)
    if isinstance(train_stages, bool) or not isinstance(train_stages, int) or not 1 <= train_stages <= total:
        raise ValueError(
            f"train_stages must be an int in [1, {total}] for {type(net).__name__} "
            f"({total} stages), got {train_stages!r}"
        )
    return total - train_stages  # stages the trunk runs


class BackboneTrunk(nn.Module):
    """The frozen early part of a timm backbone: its stem and all stages but the last
    ``train_stages``; ``trunk(x)`` is the activation map the tail starts from
    (timm's ``forward_intermediates`` with ``stop_early``)."""

    def __init__(self, backbone: nn.Module, train_stages: int) -> None:
        super().__init__()
        self.kept = _check_train_stages(backbone, train_stages)
        self.family = _family(backbone)
        self.net = backbone

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Index 0 is the stem's output, index i the output of stage i (timm's numbering with
        # extra_blocks=True for the block-list families: one index per block group).
        extra = {"extra_blocks": True} if self.family != "ResNet" else {}
        (out,) = self.net.forward_intermediates(
            x, indices=[self.kept], intermediates_only=True, stop_early=True, **extra
        )
        return out


class BackboneTail(nn.Module):
    """The trained late part of a timm backbone: its last ``train_stages`` stages, the modules
    ``forward_features`` runs after them (EfficientNet's 1x1 head conv and its BatchNorm), and
    the global pool; maps :class:`BackboneTrunk` activations to the pooled features.

    Its submodules *are* the backbone's (no copies): training the tail trains the backbone.
    The classifier dropout timm applies in ``forward_head`` is left to the hash head
    (``drop_rate``), as on cached pooled features.
    """

    def __init__(self, backbone: nn.Module, train_stages: int) -> None:
        super().__init__()
        kept = _check_train_stages(backbone, train_stages)
        self.family = _family(backbone)
        stages = _stages(backbone)[kept:]
        if self.family == "ResNet" and kept == 0:  # timm's index 0 is the stem before its max-pool
            stages = [backbone.maxpool, *stages]
        self.stages = nn.Sequential(*stages)
        self.post = nn.Sequential(*(getattr(backbone, name) for name in _FAMILIES[self.family][1]))
        # MobileNetV3 pools first, then runs its head conv: timm's forward_head does both.
        self._pool = backbone.forward_head if self.family == "MobileNetV3" else None
        self.global_pool = None if self._pool else backbone.global_pool
        self.net_head = (
            nn.ModuleList([backbone.conv_head, backbone.norm_head, backbone.act2])
            if self.family == "MobileNetV3"
            else None
        )  # registered, so the optimizer and the checkpoint see MobileNetV3's head conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.post(self.stages(x))
        if self._pool is not None:
            return self._pool(x, pre_logits=True)
        return self.global_pool(x).flatten(1)


class PointwiseAsMatmul(TorchFunctionMode):
    """Inside this context every 1x1, stride-1, ungrouped, unpadded ``conv2d`` runs as a matmul
    over channels-last pixels (``F.linear`` on the ``(N, H, W, C)`` view, output in channels-last
    layout); every other op runs as it is.

    On CPUs oneDNN's convolution is about 1.5x slower than the same product as a matmul for the
    small maps of a tail (3x3 pixels at 96 px inputs): with channels-last maps, a fine-tuning step
    of ``tf_efficientnet_lite0``'s last stage takes about 20% less time. The result equals the
    convolution's to float rounding (a different summation order), not bitwise.

    Example::

        with PointwiseAsMatmul():
            features = tail(maps.contiguous(memory_format=torch.channels_last))
    """

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.conv2d:
            x, weight, bias, stride, padding, dilation, groups = _conv2d_arguments(*args, **kwargs)
            pointwise = (
                x.dim() == 4
                and weight.shape[-2:] == (1, 1)
                and groups == 1
                and not isinstance(padding, str)
                and _pair(stride) == (1, 1)
                and _pair(padding) == (0, 0)
            )
            if pointwise:
                return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1), bias).permute(0, 3, 1, 2)
        return func(*args, **kwargs)


def _conv2d_arguments(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return input, weight, bias, stride, padding, dilation, groups


class TailHashModel(nn.Module):
    """What fine-tuning mode trains: cached trunk activations -> :class:`BackboneTail` ->
    :class:`HashHead` -> codes in ``[0, 1]^K``.

    ``flip=True`` mirrors each map left-right with probability 1/2 in training mode: the
    augmentation that cached activations allow (a flipped map approximates the map of the
    flipped image; the backbone's torch RNG draws it, so resumed runs repeat it).

    ``fast=True`` runs the tail in training mode on channels-last maps with its 1x1 convolutions
    as matmuls (:class:`PointwiseAsMatmul`; about 20% faster steps on CPUs, equal to float
    rounding). Evaluation always runs the modules as the deployed model does.
    """

    def __init__(self, tail: BackboneTail, head: HashHead, flip: bool = False, fast: bool = False) -> None:
        super().__init__()
        self.tail, self.head, self.flip, self.fast = tail, head, bool(flip), bool(fast)

    @property
    def num_bits(self) -> int:
        return self.head.num_bits

    @property
    def classifier(self) -> nn.Linear | None:
        return self.head.classifier

    def features(self, maps: torch.Tensor) -> torch.Tensor:
        """Pooled backbone features of trunk activations (no augmentation)."""
        return self.tail(maps)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        if maps.dim() != 4:
            raise ValueError(f"TailHashModel expects activation maps (N, C, H, W), got {tuple(maps.shape)}")
        if self.flip and self.training:
            mirror = torch.rand(maps.shape[0], device=maps.device) < 0.5
            maps = torch.where(mirror[:, None, None, None], maps.flip(-1), maps)
        if self.fast and self.training:
            with PointwiseAsMatmul():
                features = self.tail(maps.contiguous(memory_format=torch.channels_last))
            return self.head(features)
        return self.head(self.tail(maps))


__all__ = ["BackboneTail", "BackboneTrunk", "PointwiseAsMatmul", "TailHashModel", "num_stages"]
