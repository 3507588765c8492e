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

    #: Whether :meth:`__call__` checks what :meth:`pairwise` returns (shape ``(A, B)``,
    #: finite, within ``[0, 1]``, 0 for equal ids, symmetric for ``ids_b=None``). On by
    #: default, so a subclass returning similarities or unnormalised distances fails
    #: loudly; the built-in providers, whose output lies in ``[0, 1]`` by construction
    #: (validated matrices, clamped embeddings), turn it off to skip the per-batch check.
    check_output: bool = True

    #: Values at most this far outside ``[0, 1]`` (rounding) are clamped, not refused.
    output_atol: float = 1e-5

    def __call__(self, ids_a: torch.Tensor, ids_b: torch.Tensor | None = None) -> torch.Tensor:
        """Distances between every id of ``ids_a`` and every id of ``ids_b``.

        Args:
            ids_a: 1-D integer tensor of ids, length ``A``.
            ids_b: 1-D integer tensor of ids, length ``B``; ``ids_a`` when omitted.

        Returns:
            A float tensor of shape ``(A, B)`` on ``ids_a``'s device, values in ``[0, 1]``.
        """
        same = ids_b is None or ids_b is ids_a
        ids_b = ids_a if ids_b is None else ids_b
        self.check_ids(ids_a, "ids_a")
        self.check_ids(ids_b, "ids_b")
        with torch.no_grad():
            ids_b = ids_b.to(ids_a.device)
            d = self.pairwise(ids_a, ids_b)
            if self.check_output:
                d = self.check_distances(d, ids_a, ids_b, symmetric=same)
            return d

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

    def check_distances(
        self, d: torch.Tensor, ids_a: torch.Tensor, ids_b: torch.Tensor, symmetric: bool = False
    ) -> torch.Tensor:
        """``d`` (what :meth:`pairwise` returned for ``ids_a`` x ``ids_b``), checked.

        Raises ``ValueError`` naming the first offending pair unless ``d`` is an
        ``(A, B)`` real tensor of finite values in ``[0, 1]`` that is 0 where the ids
        are equal (a 1 there is a similarity, ``1 - d``) and, with ``symmetric``,
        symmetric. Values within :attr:`output_atol` of ``[0, 1]`` are clamped.
        """
        name = type(self).__name__
        if not isinstance(d, torch.Tensor):
            raise TypeError(f"{name}.pairwise must return a torch.Tensor, got {type(d).__name__}")
        shape = (len(ids_a), len(ids_b))
        if tuple(d.shape) != shape:
            raise ValueError(
                f"{name}.pairwise returned shape {tuple(d.shape)} for {shape[0]} x {shape[1]} ids"
            )
        if d.dtype.is_complex or d.dtype == torch.bool:
            raise TypeError(f"{name}.pairwise must return real distances, got dtype {d.dtype}")
        if not d.dtype.is_floating_point:
            d = d.float()
        if d.numel() == 0:
            return d
        tol = self.output_atol
        equal = ids_a[:, None] == ids_b[None, :]
        bad = ~torch.isfinite(d) | (d < -tol) | (d > 1 + tol) | (equal & (d.abs() > tol))
        if symmetric:
            bad |= (d - d.T).abs() > tol
        if not bool(bad.any()):  # the one device sync of the check
            return d.clamp(0.0, 1.0)
        i, j = bad.nonzero()[0].tolist()
        a, b, v = int(ids_a[i]), int(ids_b[j]), d[i, j].item()
        where = f"d({a}, {b}) = {v}"
        if not torch.isfinite(d[i, j]):
            raise ValueError(f"{name} returned a non-finite distance: {where}")
        if v < -tol or v > 1 + tol:
            raise ValueError(
                f"{name} returned a distance outside [0, 1]: {where} "
                "(semantic distances must be normalised, e.g. divided by their maximum)"
            )
        if a == b:
            raise ValueError(
                f"{name} returned {where} for equal ids; distances must be 0 there "
                "(a 1 on the diagonal means similarities: return 1 - similarity)"
            )
        raise ValueError(f"{name} is not symmetric: {where} but d({b}, {a}) = {d[j, i].item()}")

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The full ``num_ids x num_ids`` distance matrix (avoid for very many ids)."""
        ids = torch.arange(self.num_ids, device=device)
        return self(ids, ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(num_ids={self.num_ids})"
