"""A monotone reshaping of another provider's distances: ``d ** exponent``."""

from __future__ import annotations

import torch

from .base import SemanticDistance

__all__ = ["PowerDistance"]


class PowerDistance(SemanticDistance):
    """``d'(y, y') = d(y, y') ** exponent`` for a wrapped provider ``d``.

    The power keeps 0 (same target) at 0, 1 (unrelated) at 1 and the order of every
    pair, so rankings by the hierarchy are unchanged; it only moves the levels in
    between. An exponent below 1 spreads the small distances: with Barz & Denzler's
    CIFAR-100 tree, sibling classes (``d = 0.125``) become ``0.35`` apart at exponent 0.5,
    so ``SemanticDistanceLoss`` asks for a wider gap between a class and its nearest
    neighbours than the linear target does, which is what top-k retrieval rewards.
    Train with the reshaped provider; evaluate with the original one.

    Args:
        base: the provider whose distances are reshaped (its ``num_ids`` is kept).
        exponent: a positive power; 1 returns the base distances unchanged.

    Example::

        provider = PowerDistance(HierarchyDistance.cifar100(), exponent=0.5)
        loss_fn = SemanticDistanceLoss(provider)
    """

    def __init__(self, base: SemanticDistance, exponent: float = 0.5):
        if not isinstance(base, SemanticDistance):
            raise TypeError(f"PowerDistance wraps a SemanticDistance provider, got {type(base).__name__}")
        if not exponent > 0:  # also rejects NaN
            raise ValueError(f"PowerDistance needs an exponent > 0, got {exponent!r}")
        self.base = base
        self.exponent = float(exponent)
        self.num_ids = base.num_ids

    check_output = False  # the base's output is checked below; its power stays in [0, 1]

    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        d = self.base.pairwise(ids_a, ids_b)
        if self.base.check_output:
            d = self.base.check_distances(d, ids_a, ids_b, symmetric=ids_b is ids_a)
        return d.clamp(min=0.0).pow(self.exponent)

    def __repr__(self) -> str:
        return f"PowerDistance({self.base!r}, exponent={self.exponent})"
