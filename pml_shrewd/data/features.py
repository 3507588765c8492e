"""Backbone features held in memory: the data set of a hash head trained on a frozen backbone
(pooled features, ``(N, D)``) or of a backbone tail in fine-tuning mode (activation maps,
``(N, C, H, W)``, kept in float16 when given so)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from .base import ImageSamples


class FeatureSamples(ImageSamples):
    """``dataset[i]`` is ``(features[i], label[i])``: cached backbone features with the labels,
    classes and sample names of the images they came from.

    ``features`` is ``(N, D)`` pooled features or ``(N, C, H, W)`` activation maps. Float16
    input is stored as float16 (half the memory of a cache of maps); every sample comes out as
    float32. ``skipped`` names the images of the set that have no row (unreadable at
    extraction), so a run on the features can count them as a run on the images would;
    ``missing`` the images a caption list names that have no file at all (see
    :class:`~pml_shrewd.data.CaptionedImages`), reported by the trainer beside them.

    Example::

        train = FeatureSamples(np.load("f.npz")["features"], labels, classes)
        head_codes = head(train.features)
    """

    def __init__(
        self,
        features: np.ndarray | torch.Tensor,
        targets: Sequence[int],
        classes: Sequence[str],
        names: Sequence[str] | None = None,
        skipped: Sequence[str] = (),
        missing: Sequence[str] = (),
    ) -> None:
        dtype = np.float16 if np.asarray(features[:0]).dtype == np.float16 else np.float32
        self.features = torch.as_tensor(np.asarray(features, dtype=dtype))
        if self.features.dim() not in (2, 4):
            raise ValueError(
                "FeatureSamples: features must be (N, D) or (N, C, H, W), got shape "
                f"{tuple(self.features.shape)}"
            )
        self.targets = [int(t) for t in targets]
        if len(self.targets) != len(self.features):
            raise ValueError(
                f"FeatureSamples: {len(self.features)} feature rows but {len(self.targets)} labels"
            )
        if not torch.isfinite(self.features).all():
            raise ValueError("FeatureSamples: the features hold NaN or inf values")
        self.classes = list(classes)
        self.names = list(names) if names is not None else None
        self.skipped = list(skipped)  # images of this set left out at extraction (unreadable)
        self.missing = list(missing)  # images listed by the data set with no file
        self._labels = torch.as_tensor(self.targets, dtype=torch.long)

    def load(self, index: int) -> torch.Tensor:
        return self.features[index].float()

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.features[index].float(), self.targets[index]

    def __getitems__(self, indices: list[int]) -> list[tuple[torch.Tensor, int]]:
        # One gather per batch instead of one tensor index per sample (DataLoader uses it).
        idx = torch.as_tensor(indices, dtype=torch.long)
        return list(zip(self.features[idx].float().unbind(0), self._labels[idx].tolist()))

    def select(self, indices: Sequence[int], *, skipped: Sequence[str] | None = None) -> FeatureSamples:
        """The rows ``indices`` as a new :class:`FeatureSamples` (same classes and ``missing``;
        ``skipped``: the part's own unreadable images, by default this set's)."""
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        names = [self.names[i] for i in idx.tolist()] if self.names is not None else None
        skipped = self.skipped if skipped is None else skipped
        return FeatureSamples(
            self.features[idx], self._labels[idx].tolist(), self.classes, names, skipped, self.missing
        )

    def sample_name(self, index: int) -> str:
        return self.names[index] if self.names is not None else f"{type(self).__name__}[{index}]"
