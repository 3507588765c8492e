"""The classic 0/1 label distance: the baseline semantic distance."""

from __future__ import annotations

import operator

import torch

from .base import SemanticDistance

__all__ = ["LabelDistance"]


class LabelDistance(SemanticDistance):
    """``d(y, y') = 0`` if ``y == y'`` else ``1``: plain class labels, no semantics.

    The same-class / different-class similarity of classic supervised hashing; the
    baseline that SHREWD's semantic distances replace (Arponen & Bishop, arXiv
    2005.04917). Computed on the fly, no matrix is stored.

    Example::

        provider = LabelDistance(num_classes=100)
        loss_fn = SemanticDistanceLoss(provider)
        d = provider(torch.tensor([3, 3, 7]))  # [[0, 0, 1], [0, 0, 1], [1, 1, 0]]
    """

    check_output = False  # in [0, 1] by construction

    def __init__(self, num_classes: int):
        try:
            n = operator.index(num_classes)  # ints and numpy ints, not floats
        except TypeError:
            n = None
        if n is None or isinstance(num_classes, bool) or n < 1:
            raise ValueError(f"LabelDistance needs a positive integer num_classes, got {num_classes!r}")
        self.num_ids = int(n)

    @property
    def num_classes(self) -> int:
        return self.num_ids

    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        return (ids_a[:, None] != ids_b[None, :]).to(torch.float32)
