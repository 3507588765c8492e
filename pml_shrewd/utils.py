"""Small checks and helpers shared by the losses, regularizers and retrieval code."""

from __future__ import annotations

import torch
from pytorch_metric_learning.distances import BaseDistance

from ._cache import cache_dir  # noqa: F401  (public here: pml_shrewd.utils.cache_dir)


def check_embeddings(embeddings: torch.Tensor, name: str = "embeddings", min_rows: int = 1) -> None:
    """Raise a clear error unless ``embeddings`` is a finite 2-D float tensor with enough rows."""
    if not isinstance(embeddings, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(embeddings).__name__}")
    if embeddings.dim() != 2:
        raise ValueError(f"{name} must have shape (batch_size, num_bits), got {tuple(embeddings.shape)}")
    if not embeddings.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {embeddings.dtype}")
    if len(embeddings) < min_rows:
        if len(embeddings) == 0:
            raise ValueError(f"{name} is an empty batch")
        raise ValueError(f"{name} needs at least {min_rows} rows, got {len(embeddings)}")
    if not torch.isfinite(embeddings).all():
        bad = int((~torch.isfinite(embeddings)).any(dim=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values ({bad} of {len(embeddings)} rows)")


_CDIST_KERNELS: dict[tuple[str, torch.dtype], bool] = {}


def has_cdist_kernel(dtype: torch.dtype, device: torch.device) -> bool:
    """Whether ``torch.cdist`` (forward and backward) runs in ``dtype`` on ``device``'s type.

    Probed once per device type and dtype on a 1 x 2 tensor, then cached. torch 2.x has no
    bfloat16 (nor float16) ``cdist`` kernel on CPU.
    """
    key = (device.type, dtype)
    if key not in _CDIST_KERNELS:
        try:
            with torch.inference_mode(False), torch.enable_grad():  # also when called under no_grad
                probe = torch.ones(1, 2, dtype=dtype, device=device, requires_grad=True)
                torch.cdist(probe, torch.zeros_like(probe), p=1.0).sum().backward()
            _CDIST_KERNELS[key] = True
        except (NotImplementedError, RuntimeError):
            _CDIST_KERNELS[key] = False
    return _CDIST_KERNELS[key]


def distance_matrix(distance: BaseDistance, query: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """``distance(query, ref)``, also for bfloat16 codes where torch has no ``cdist`` kernel.

    PML's distances call ``torch.cdist`` for every dtype but float16 (which PML computes pair by
    pair). For bfloat16 codes (e.g. from CPU autocast) on a device without a bfloat16 ``cdist``
    kernel (:func:`has_cdist_kernel`; CPU in torch 2.x) the matrix is computed in float32 and
    cast back to bfloat16, differentiably. Everything else, bfloat16 where torch has the kernel
    included, goes through unchanged.
    """
    if query.dtype == torch.bfloat16 and not has_cdist_kernel(torch.bfloat16, query.device):
        return distance(query.float(), ref.float()).to(torch.bfloat16)
    return distance(query, ref)


class NonFiniteLossError(FloatingPointError):
    """A loss or regulariser met non-finite intermediate values (an overflow in the codes' dtype)."""
