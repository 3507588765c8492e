"""Small checks shared by the losses, regularizers and retrieval code."""

from __future__ import annotations

import torch


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
