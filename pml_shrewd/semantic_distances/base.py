"""The protocol every semantic-distance provider follows.

A provider maps two 1-D integer id tensors to the matrix of semantic distances
``d(y_a, y_b)`` between the targets those ids stand for (classes, captions, ...).
Values lie in ``[0, 1]``; the result is a constant for autograd and lives on the
ids' device. ``SemanticDistanceLoss`` calls providers once per batch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


class SemanticDistance(ABC):
    """Base class of semantic-distance providers.

    Subclasses implement :meth:`pairwise` for already validated ids and set
    ``num_ids`` (the number of valid ids: ids lie in ``range(num_ids)``).

    Example::

        provider = LabelDistance(num_classes=10)
        d = provider(torch.tensor([0, 1, 1]), torch.tensor([1, 2]))  # shape (3, 2)
    """

    #: Number of valid ids; ids must lie in ``range(num_ids)``.
    num_ids: int

    def __call__(self, ids_a: torch.Tensor, ids_b: torch.Tensor | None = None) -> torch.Tensor:
        """Distances between every id of ``ids_a`` and every id of ``ids_b``.

        Args:
            ids_a: 1-D integer tensor of ids, length ``A``.
            ids_b: 1-D integer tensor of ids, length ``B``; ``ids_a`` when omitted.

        Returns:
            A float tensor of shape ``(A, B)`` on ``ids_a``'s device, values in ``[0, 1]``.
        """
        ids_b = ids_a if ids_b is None else ids_b
        self.check_ids(ids_a, "ids_a")
        self.check_ids(ids_b, "ids_b")
        with torch.no_grad():
            return self.pairwise(ids_a, ids_b.to(ids_a.device))

    @abstractmethod
    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        """Distance matrix for validated 1-D ``int64`` ids on the same device."""

    def check_ids(self, ids: torch.Tensor, name: str = "ids") -> None:
        """Raise a clear error unless ``ids`` is a 1-D integer tensor within range."""
        if not isinstance(ids, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of integer ids, got {type(ids).__name__}")
        if ids.dim() != 1:
            raise ValueError(f"{name} must be a 1-D tensor of integer ids, got shape {tuple(ids.shape)}")
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise TypeError(f"{name} must hold integer ids, got dtype {ids.dtype}")
        if ids.numel() == 0:
            return
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= self.num_ids:
            bad = lo if lo < 0 else hi
            raise IndexError(
                f"{type(self).__name__} got id {bad} in {name}, outside its range "
                f"[0, {self.num_ids - 1}] ({self.num_ids} ids)"
            )

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The full ``num_ids x num_ids`` distance matrix (avoid for very many ids)."""
        ids = torch.arange(self.num_ids, device=device)
        return self(ids, ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ids={self.num_ids})"
