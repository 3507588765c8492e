"""Exact Manhattan (L1) distance matrix for codes, faster than ``torch.cdist(p=1)`` with autograd.

On binary codes the Manhattan distance is the Hamming distance, which is why it is the
default distance of :class:`~pml_shrewd.SemanticDistanceLoss`. ``torch.cdist(x, y, p=1)``
under autograd pays twice for it on CPU: its forward kernel is several times slower than
faiss's SIMD L1 kernel, and its backward runs the sign-weighted sum once for ``x`` and once
more for ``y`` even when ``y`` *is* ``x`` (the usual ``ref_emb is embeddings`` case).
:func:`manhattan_cdist` computes the same values and gradients with

* forward: faiss's ``pairwise_distances(metric=METRIC_L1)`` for float32 CPU tensors (faiss is
  already a dependency), ``torch.cdist(p=1)`` otherwise (float64, CUDA, faiss missing);
* backward: ATen's fused ``_cdist_backward`` kernel, called once with ``G + G^T`` when
  ``y`` is ``x`` (the gradient of ``D_ij`` and ``D_ji`` through the same rows), and once
  per input otherwise; a row-chunked pure-torch version where that private op is absent.

Nothing of size ``B x R x K`` is ever held: both kernels are fused loops and the fallback
works on chunks of rows, so the memory is the ``B x R`` matrix (and its gradient).

Ties: ``|a - b|`` is not differentiable at ``a == b``; like ``torch.cdist`` the subgradient
``sign(0) = 0`` is used, so equal coordinates (and the zero diagonal of ``D(x, x)``) give no
gradient, the same tie rule as ``torch.cdist``'s own backward.
"""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import LpDistance

try:  # a hard dependency of the package, but the distance works without it
    import faiss
except ImportError:  # pragma: no cover - faiss-cpu is installed with the package
    faiss = None

__all__ = ["ManhattanDistance", "manhattan_cdist"]

# Rows per chunk of the pure-torch backward: chunk x R x K temporaries of at most this many elements.
_CHUNK_ELEMENTS = 2**22


def _faiss_l1(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``sum_k |x_ik - y_jk|`` by faiss's L1 kernel (float32 CPU), with torch's thread count."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(torch.get_num_threads())  # not faiss's own default of every core
    try:
        out = faiss.pairwise_distances(x.detach().numpy(), y.detach().numpy(), metric=faiss.METRIC_L1)
    finally:
        faiss.omp_set_num_threads(threads)
    return torch.from_numpy(out)


def _l1_forward(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if (
        faiss is not None
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and y.dtype == torch.float32
        and len(x) > 0
        and len(y) > 0
        and x.shape[1] > 0
    ):
        return _faiss_l1(x, y)
    return torch.cdist(x.detach(), y.detach(), p=1.0)


def _sign_weighted_sum_chunked(grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``out_ik = sum_j grad_ij * sign(x_ik - y_jk)`` in chunks of rows (the pure-torch fallback)."""
    out = torch.empty_like(x)
    step = max(1, _CHUNK_ELEMENTS // max(1, len(y) * x.shape[1]))
    for start in range(0, len(x), step):
        stop = start + step
        signs = (x[start:stop, None, :] - y[None, :, :]).sign_()
        out[start:stop] = torch.bmm(grad[start:stop, None, :], signs).squeeze(1)
    return out


def _sign_weighted_sum(
    grad: torch.Tensor, x: torch.Tensor, y: torch.Tensor, dist: torch.Tensor
) -> torch.Tensor:
    """``out_ik = sum_j grad_ij * sign(x_ik - y_jk)``: the gradient of ``sum_ij grad_ij * D_ij`` in ``x``."""
    op = getattr(torch.ops.aten, "_cdist_backward", None)
    if op is not None:
        try:
            # ATen's fused kernel behind torch.cdist's backward (p = 1 never reads dist).
            return op(grad.contiguous(), x.contiguous(), y.contiguous(), 1.0, dist.contiguous())
        except (RuntimeError, NotImplementedError):  # pragma: no cover - private op changed
            pass
    return _sign_weighted_sum_chunked(grad, x, y)


class _ManhattanCdist(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, same):
        dist = _l1_forward(x, y)
        ctx.same = same
        ctx.save_for_backward(x, y, dist)
        return dist

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y, dist = ctx.saved_tensors
        grad_x = grad_y = None
        if ctx.same:
            # D_ij and D_ji both depend on row i: one pass with their summed gradients. The
            # whole gradient goes to the first input, the second (the same tensor) gets none.
            if ctx.needs_input_grad[0] or ctx.needs_input_grad[1]:
                # (a contiguous transposed copy, then in place: half the time of grad + grad.mT)
                grad_x = _sign_weighted_sum(grad.mT.contiguous().add_(grad), x, x, dist)
            return grad_x, None, None
        if ctx.needs_input_grad[0]:
            grad_x = _sign_weighted_sum(grad, x, y, dist)
        if ctx.needs_input_grad[1]:
            grad_y = _sign_weighted_sum(grad.mT, y, x, dist.mT)
        return grad_x, grad_y, None


def manhattan_cdist(x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
    """``torch.cdist(x, y, p=1)`` for 2-D ``x`` (B x K) and ``y`` (R x K), same values and gradients.

    ``y=None`` or ``y is x`` takes the symmetric path (one backward pass). float32 and float64;
    other dtypes go to ``torch.cdist`` unchanged. See the module docstring for how and the tie rule.
    """
    if y is None:
        y = x
    if x.dim() != 2 or y.dim() != 2:
        raise ValueError(
            f"manhattan_cdist needs 2-D tensors, got shapes {tuple(x.shape)} and {tuple(y.shape)}"
        )
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x has {x.shape[1]} dimensions but y has {y.shape[1]}")
    if x.dtype not in (torch.float32, torch.float64) or x.dtype != y.dtype or x.device != y.device:
        return torch.cdist(x, y, p=1.0)
    return _ManhattanCdist.apply(x, y, y is x)


class ManhattanDistance(LpDistance):
    """PML distance: the Manhattan (L1) distance matrix, Hamming distance on binary codes.

    The same values and gradients as ``LpDistance(p=1, normalize_embeddings=False)``, computed
    by :func:`manhattan_cdist` (faiss's L1 kernel forward on CPU float32, one fused backward
    pass when the reference set is the batch itself). It is an ``LpDistance`` with ``p = 1``
    (``is_inverted=False``), so it fits wherever PML expects one.

    Args:
        normalize_embeddings: L1-normalise the embeddings first (PML's option; default off,
            codes are compared as they are).
        power: PML's exponent of the distance matrix (default 1).
        **kwargs: other PML ``BaseDistance`` arguments (``collect_stats``).
    """

    def __init__(self, normalize_embeddings: bool = False, power: float = 1, **kwargs):
        if kwargs.get("p", 1) != 1:
            raise ValueError(f"ManhattanDistance is the p=1 distance, got p={kwargs['p']}")
        if kwargs.get("is_inverted", False):
            raise ValueError("ManhattanDistance is a distance, not a similarity: is_inverted must be False")
        kwargs.pop("p", None)
        kwargs.pop("is_inverted", None)
        super().__init__(
            normalize_embeddings=normalize_embeddings, p=1, power=power, is_inverted=False, **kwargs
        )

    def compute_mat(self, query_emb, ref_emb):
        if ref_emb is None:
            ref_emb = query_emb
        if query_emb.dtype in (torch.float32, torch.float64):
            return manhattan_cdist(query_emb, ref_emb)
        return super().compute_mat(query_emb, ref_emb)  # float16 pair by pair, as PML does

    def pairwise_distance(self, query_emb, ref_emb):
        """Row-wise ``sum_k |q_k - r_k|`` (exact: no ``eps`` as ``torch.nn.functional.pairwise_distance`` adds)."""
        return (query_emb - ref_emb).abs().sum(dim=-1)
