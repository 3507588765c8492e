"""Frozen-backbone features, computed once per data set and cached on disk: the pooled features
(a head on a frozen backbone) or the activations of the frozen trunk (fine-tuning mode)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..data import FeatureSamples
from ..models.stages import BackboneTail, BackboneTrunk
from .inference import encode_dataset


class _ChannelsLast(nn.Module):
    """The backbone in channels-last memory layout (about 10% faster on CPUs)."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.to(memory_format=torch.channels_last)).contiguous()


HEAD_SETTINGS = ("num_bits", "num_classes", "hidden_dim", "batch_norm", "standardize_features", "drop_rate")


def feature_cache_key(model, dataset, weights: str | None = None, train_stages: int = 0) -> str:
    """A key that changes with the backbone, its weights file, the input transform, the images
    and, for trunk activations, the cut (``train_stages``)."""
    names = [dataset.sample_name(i) for i in range(len(dataset))]
    stamp = os.stat(weights).st_size if weights and os.path.isfile(weights) else None
    # Head settings (bits, hidden width, BatchNorm, dropout before the head, ...) do not change
    # the backbone's eval-mode features: they must not force a new extraction.
    backbone = {k: v for k, v in model.config.items() if k not in HEAD_SETTINGS}
    extra = {"train_stages": train_stages} if train_stages else {}  # pooled features keep their old keys
    payload = json.dumps(
        dict(
            **extra,
            model=backbone,
            weights=[weights, stamp],
            data=str(model.data_config),
            n=len(names),
            names=hashlib.sha1("\n".join(names).encode()).hexdigest(),
        ),
        sort_keys=True,
        default=str,
    )
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def cached_features(
    model,
    dataset,
    cache_dir: str | os.PathLike,
    *,
    weights_file: str | None = None,
    batch_size: int = 128,
    num_workers: int = 0,
    train_stages: int = 0,
) -> FeatureSamples:
    """The pooled ``model.backbone`` features of every readable image of ``dataset``, with its
    labels, classes and sample names, as a :class:`~pml_shrewd.data.FeatureSamples`.

    ``train_stages > 0`` caches instead the activation maps of the frozen trunk (the backbone
    but its last ``train_stages`` stages, :class:`~pml_shrewd.models.BackboneTrunk`) in float16,
    as ``activations-<key>.npz``: the inputs of fine-tuning mode.

    Computed once (batches of ``batch_size`` in eval mode, through the same encoder as
    everything else: :func:`~pml_shrewd.training.encode_dataset`) and stored in
    ``cache_dir`` as ``features-<key>.npz`` (written to a temporary name, then renamed),
    where the key changes with the backbone, its weights (``weights_file``), the transform and
    the image list.
    Unreadable images are left out (their names are in the file's ``skipped``).

    An activation pass also writes the pooled features' cache where it is missing: the tail
    (:class:`~pml_shrewd.models.BackboneTail`) in eval mode on the float32 maps is the frozen
    backbone's own forward, so a benchmark that needs both (fine-tuned rows and a classical
    hash of the frozen features) runs the trunk over the images once.
    """
    prefix = "activations" if train_stages else "features"
    key = feature_cache_key(model, dataset, weights_file, train_stages)
    cache = Path(cache_dir) / f"{prefix}-{key}.npz"
    if cache.is_file():
        return _read_cache(cache)
    encoder = BackboneTrunk(model.backbone, train_stages) if train_stages else model.backbone
    features, labels, kept = encode_dataset(
        _ChannelsLast(encoder).eval(),
        dataset,
        batch_size,
        device="cpu" if not torch.cuda.is_available() else None,
        num_workers=num_workers,
    )
    if train_stages:
        pooled = Path(cache_dir) / f"features-{feature_cache_key(model, dataset, weights_file)}.npz"
        if not pooled.is_file():
            tail = _ChannelsLast(BackboneTail(model.backbone, train_stages)).eval()
            device = next(model.backbone.parameters()).device  # where encode_dataset left it
            with torch.no_grad():  # the same batches and channels-last kernels as a pooled pass
                pooled_features = torch.cat(
                    [tail(b.to(device)).float().cpu() for b in features.split(batch_size)]
                )
            _write_cache(pooled, pooled_features, labels, dataset, kept)
    # Back to the default layout: a tail trained next must compute as it does on a cache hit
    # (channels-last weights pick other kernels, and the runs would differ in the last bits).
    model.backbone.to(memory_format=torch.contiguous_format)
    _write_cache(cache, features.half() if train_stages else features, labels, dataset, kept)
    return _read_cache(cache)  # what a later run reads (float16 maps), not the float32 pass


def _write_cache(cache: Path, features: torch.Tensor, labels: torch.Tensor, dataset, kept: list[int]) -> None:
    """One cache file, written to a temporary name and then renamed (never half a file)."""
    skipped = sorted(set(range(len(dataset))) - set(kept))
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        features=features.contiguous().numpy(),
        labels=labels.numpy().astype(np.int64),
        classes=np.array(dataset.classes),
        names=np.array([dataset.sample_name(i) for i in kept]),
        skipped=np.array([dataset.sample_name(i) for i in skipped]),
    )
    os.replace(tmp, cache)


def _read_cache(cache: Path) -> FeatureSamples:
    """A feature cache file as :class:`FeatureSamples` (files from before ``skipped`` have none)."""
    data = np.load(cache, allow_pickle=False)
    skipped = list(data["skipped"]) if "skipped" in data.files else []
    return FeatureSamples(
        data["features"], data["labels"], list(data["classes"]), list(data["names"]), skipped
    )
