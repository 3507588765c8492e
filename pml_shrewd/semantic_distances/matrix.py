"""A precomputed class-by-class semantic distance matrix."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from .base import SemanticDistance

__all__ = ["MatrixDistance"]


class _CachedMatrixDistance(SemanticDistance):
    """Shared machinery: a validated ``C x C`` float32 matrix, indexed per batch.

    The matrix is moved to a device the first time ids arrive there and kept
    (one copy per device), so a training loop pays the transfer once.
    """

    check_output = False  # in [0, 1] by construction

    def _set_matrix(self, matrix: torch.Tensor) -> None:
        self._matrix = matrix.detach().to("cpu", torch.float32).contiguous()
        self.num_ids = int(self._matrix.shape[0])
        self._per_device: dict[torch.device, torch.Tensor] = {}

    def _on(self, device: torch.device) -> torch.Tensor:
        device = torch.device(device)
        if device.type == "cpu":
            return self._matrix
        cached = self._per_device.get(device)
        if cached is None:
            cached = self._per_device[device] = self._matrix.to(device)
        return cached

    def pairwise(self, ids_a: torch.Tensor, ids_b: torch.Tensor) -> torch.Tensor:
        matrix = self._on(ids_a.device)
        return matrix.index_select(0, ids_a.long()).index_select(1, ids_b.long())

    def matrix(self, device: torch.device | str | None = None) -> torch.Tensor:
        """A copy of the full ``num_ids x num_ids`` distance matrix (float32)."""
        return self._on(torch.device(device or "cpu")).clone()


def _as_float64(matrix: torch.Tensor | np.ndarray | Sequence) -> torch.Tensor:
    if isinstance(matrix, torch.Tensor):
        return matrix.detach().to("cpu", torch.float64)
    try:
        return torch.as_tensor(np.asarray(matrix, dtype=np.float64))
    except (TypeError, ValueError) as err:
        raise TypeError(f"MatrixDistance needs a numeric square matrix, could not convert: {err}") from err


def _as_matrix(matrix: torch.Tensor | np.ndarray | Sequence, atol: float) -> torch.Tensor:
    """Validate a distance matrix and return it as float64 (exact symmetry, zero diagonal)."""
    m = _as_float64(matrix)
    if m.dim() != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"MatrixDistance needs a square 2-D matrix, got shape {tuple(m.shape)}")
    if m.shape[0] == 0:
        raise ValueError("MatrixDistance needs at least one class, got an empty 0 x 0 matrix")
    if not torch.isfinite(m).all():
        i, j = (~torch.isfinite(m)).nonzero()[0].tolist()
        raise ValueError(f"MatrixDistance matrix must be finite, got {m[i, j].item()} at [{i}, {j}]")
    lo, hi = m.min().item(), m.max().item()
    if lo < 0 or hi > 1:
        bad = lo if lo < 0 else hi
        i, j = (m == bad).nonzero()[0].tolist()
        raise ValueError(
            f"MatrixDistance values must lie in [0, 1], got {bad} at [{i}, {j}] "
            "(divide by the maximum to normalise a distance matrix)"
        )
    diag = m.diagonal().abs()
    if (diag > atol).any():
        i = int(diag.argmax())
        if m.shape[0] > 1 and bool(((m.diagonal() - 1).abs() <= atol).all()):
            raise ValueError(
                "MatrixDistance got a similarity matrix (its diagonal is 1): distances are 0 on the "
                "diagonal; pass 1 - S, or use MatrixDistance.from_similarity(S)"
            )
        raise ValueError(
            f"MatrixDistance needs a zero diagonal (d(y, y) = 0), got {m[i, i].item()} at [{i}, {i}]"
        )
    asym = (m - m.T).abs()
    if (asym > atol).any():
        i, j = divmod(int(asym.argmax()), m.shape[0])
        raise ValueError(
            f"MatrixDistance matrix must be symmetric, got [{i}, {j}] = {m[i, j].item()} "
            f"but [{j}, {i}] = {m[j, i].item()}"
        )
    # Within tolerance: make symmetry and the zero diagonal exact.
    m = (m + m.T) / 2
    m.fill_diagonal_(0.0)
    return m


class MatrixDistance(_CachedMatrixDistance):
    """Semantic distances read from a precomputed ``C x C`` class-by-class matrix.

    For any distance not built in (word vectors, confusion-based distances, a
    hierarchy computed elsewhere): ``d(y_a, y_b) = matrix[y_a, y_b]``, as used by
    the SHREWD loss (Arponen & Bishop, arXiv 2005.04917, eq. 2). The matrix must
    be square, finite, within ``[0, 1]``, symmetric and zero on the diagonal
    (checked up to ``atol``, then made exact). Stored as float32.

    Example::

        provider = MatrixDistance([[0.0, 0.2], [0.2, 0.0]])   # or MatrixDistance.from_file("d.npy")
        loss_fn = SemanticDistanceLoss(provider)
        d = provider(torch.tensor([0, 1]))                     # [[0.0, 0.2], [0.2, 0.0]]
    """

    def __init__(self, matrix: torch.Tensor | np.ndarray | Sequence, *, atol: float = 1e-6):
        self._set_matrix(_as_matrix(matrix, atol))

    @classmethod
    def from_similarity(
        cls, similarity: torch.Tensor | np.ndarray | Sequence, *, atol: float = 1e-6
    ) -> MatrixDistance:
        """Distances ``1 - S`` from a class-by-class similarity matrix ``S``.

        ``S`` must lie in ``[0, 1]`` with 1 on the diagonal (each class is fully
        similar to itself) and be symmetric; anything else raises ``ValueError``.

        Example::

            provider = MatrixDistance.from_similarity([[1.0, 0.8], [0.8, 1.0]])  # d(0, 1) = 0.2
        """
        s = _as_float64(similarity)
        if s.dim() == 2 and s.shape[0] == s.shape[1] and s.shape[0] > 0:
            diag = (s.diagonal() - 1).abs()
            if torch.isfinite(diag).all() and (diag > atol).any():
                i = int(diag.argmax())
                raise ValueError(
                    f"MatrixDistance.from_similarity needs 1 on the diagonal (s(y, y) = 1), "
                    f"got {s[i, i].item()} at [{i}, {i}]"
                )
        return cls(1.0 - s, atol=atol)

    @classmethod
    def from_file(cls, path: str | os.PathLike, *, atol: float = 1e-6) -> MatrixDistance:
        """Load a matrix from ``.npy``, ``.pt``/``.pth`` (a tensor), ``.csv`` or whitespace-separated text."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"MatrixDistance.from_file: no such file {str(path)!r}")
        suffix = path.suffix.lower()
        if suffix == ".npy":
            matrix = np.load(path, allow_pickle=False)
        elif suffix in (".pt", ".pth"):
            matrix = torch.load(path, map_location="cpu", weights_only=True)
        else:
            matrix = np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=2)
        return cls(matrix, atol=atol)
