"""Binary hash codes: binarise continuous codes, pack bits into bytes, unpack.

SHREWD / SHRED (Arponen & Bishop, arXiv 2005.04917) train continuous codes
``z in [0, 1]^K``; the hash code used for retrieval is ``b = 1[z > 0.5]``.
faiss binary indexes take codes as ``numpy.packbits`` rows (``uint8``, ``K / 8``
bytes per code, most significant bit first), which :func:`pack_codes` produces.

Example::

    bits = binarize(model(images))            # (N, 64) uint8 tensor of 0/1
    packed = pack_codes(bits)                  # (N, 8) numpy uint8, for faiss
    assert (unpack_codes(packed, 64) == bits.cpu().numpy()).all()
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["binarize", "pack_codes", "unpack_codes", "to_numpy", "check_binary", "check_code_range"]

# Tolerance of the "every row has unit L2 norm" test of :func:`check_code_range` (float32
# normalisation is exact to ~1e-7; genuine sigmoid codes are nowhere near unit norm in every row).
_UNIT_NORM_ATOL = 1e-4


def to_numpy(x: Any, name: str = "array") -> np.ndarray:
    """Return ``x`` (numpy array, torch tensor or sequence) as a numpy array (no copy where possible).

    Tensors of dtypes numpy lacks (``bfloat16``) become ``float32`` (exact: bfloat16 is a
    truncated float32).
    """
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except Exception as exc:  # pragma: no cover - numpy's own message is clear enough
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(x).__name__}") from exc


def check_binary(bits: np.ndarray, name: str = "codes") -> None:
    """Raise a clear error unless ``bits`` holds only 0 and 1 (bool or numeric)."""
    if bits.dtype == np.bool_:
        return
    if not (np.issubdtype(bits.dtype, np.number)):
        raise TypeError(f"{name} must be numeric 0/1 values, got dtype {bits.dtype}")
    if np.issubdtype(bits.dtype, np.floating) and np.isnan(bits).any():
        raise ValueError(f"{name} contains NaN; binary codes must hold only 0 and 1")
    if bits.size and not np.isin(bits, (0, 1)).all():
        bad = bits[~np.isin(bits, (0, 1))].ravel()[0]
        raise ValueError(
            f"{name} must hold only 0 and 1, found {bad!r}; binarize continuous codes first "
            "with pml_shrewd.binarize(codes) (threshold 0.5, or signed=True for [-1, 1] codes)"
        )


def check_code_range(codes: Any, name: str = "codes", *, signed: bool = False, hint: str = "") -> None:
    """Refuse codes that binarising at 0.5 (or at 0 with ``signed=True``) would turn into noise.

    Accepted: 0/1 bits, or continuous codes in ``[0, 1]`` (sigmoid outputs; ``[-1, 1]`` with
    ``signed=True``, e.g. tanh outputs). Refused with a ``ValueError`` saying what to do:

    - values outside the range (raw logits, or ``[-1, 1]`` codes without ``signed=True``);
    - **L2-normalised codes** (not ``signed``): every row has unit L2 norm (within 1e-4) while
      ``K > 1`` and the codes are not already 0/1. L2 normalisation keeps ``[0, 1]`` codes
      inside ``[0, 1]`` but shrinks them (64 sigmoid codes have norms around 4.6), so nearly every
      value falls below 0.5 and every code becomes 0...0. PML's testers normalise by default
      (``normalize_embeddings=True``). The test is unambiguous in practice: genuine ``[0, 1]``
      codes would need unit norm in *every* row, and 0/1 codes with a single one (which are
      their own normalisation) are accepted. Signed codes need no such test: normalising does
      not change their signs, hence not their bits.

    ``hint`` is appended to the messages (e.g. how to switch normalisation off).

    Example::

        check_code_range(torch.sigmoid(logits), "query")        # fine
        check_code_range(logits, "query")                       # ValueError: apply a sigmoid first
    """
    arr = to_numpy(codes, name)
    if arr.dtype == np.bool_ or arr.size == 0:
        return
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"{name} must be numeric codes, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        raise ValueError(f"{name} contain NaN or infinite values; cannot binarize{hint}")
    lo, hi = (-1.0, 1.0) if signed else (0.0, 1.0)
    vmin, vmax = float(arr.min()), float(arr.max())
    if vmin < lo or vmax > hi:
        what = (
            "[-1, 1] (e.g. tanh outputs; pass raw logits through torch.tanh first)"
            if signed
            else "[0, 1] (0/1 bits or sigmoid outputs; pass raw logits through torch.sigmoid first, "
            "map [-1, 1] codes with (z + 1) / 2 or binarise them with signed=True)"
        )
        raise ValueError(f"{name} must lie in {what}, found values in [{vmin:.4g}, {vmax:.4g}]{hint}")
    if signed or arr.ndim != 2 or arr.shape[1] < 2 or np.issubdtype(arr.dtype, np.integer):
        return  # integers in range are 0/1 bits
    norms = np.sqrt(np.square(arr, dtype=np.float64).sum(axis=1))
    if np.abs(norms - 1.0).max() <= _UNIT_NORM_ATOL and not np.isin(arr, (0, 1)).all():
        raise ValueError(
            f"every row of {name} has unit L2 norm: these look like L2-normalised codes. "
            "Normalising shrinks [0, 1] codes, so binarising them at 0.5 sets (nearly) every bit to 0 "
            f"and the Hamming metrics drop to chance; pass the codes as the model outputs them{hint}"
        )


def _packbits(bits: np.ndarray) -> np.ndarray:
    """``numpy.packbits`` of 0/1 rows (most significant bit first; a last partial byte padded with 0)."""
    return np.ascontiguousarray(np.packbits(bits.astype(np.uint8, copy=False), axis=1))


def binarize(codes: Any, threshold: float | None = None, signed: bool = False) -> Any:
    """Binarise continuous codes: ``bit = 1[code > threshold]`` (Arponen & Bishop, 2020).

    Args:
        codes: continuous codes, numpy array or torch tensor of any shape (usually ``(N, K)``).
        threshold: the cut; defaults to 0.5 for ``[0, 1]`` codes (sigmoid outputs) and to
            0.0 when ``signed=True`` (``[-1, 1]`` codes, e.g. tanh outputs: sign binarisation).
        signed: the codes lie in ``[-1, 1]``; only changes the default threshold.

    Returns:
        0/1 ``uint8`` codes of the same kind as the input (numpy array, or tensor on the same device).

    Example::

        bits = binarize(torch.sigmoid(logits))        # 1 where z > 0.5
        bits = binarize(torch.tanh(logits), signed=True)
        packed = pack_codes(bits)
    """
    if threshold is None:
        threshold = 0.0 if signed else 0.5
    if isinstance(codes, torch.Tensor):
        if codes.dtype == torch.bool:
            return codes.to(torch.uint8)
        if codes.is_floating_point() and torch.isnan(codes).any():
            raise ValueError("codes contain NaN; cannot binarize")
        return (codes > threshold).to(torch.uint8)
    arr = to_numpy(codes, "codes")
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"codes must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError("codes contain NaN; cannot binarize")
    return (arr > threshold).astype(np.uint8)


def pack_codes(bits: Any) -> np.ndarray:
    """Pack 0/1 codes ``(N, K)`` into ``uint8`` rows ``(N, K / 8)`` (the layout faiss binary indexes take).

    Bit ``j`` of a code goes to byte ``j // 8``, most significant bit first (``numpy.packbits``).

    Example::

        packed = pack_codes(binarize(z))          # z: (N, 64) codes in [0, 1]
        index = faiss.IndexBinaryFlat(64); index.add(packed)
        bits = unpack_codes(packed, 64)
    """
    arr = to_numpy(bits, "bits")
    if arr.ndim != 2:
        raise ValueError(f"bits must be a 2-D (N, K) array of 0/1 codes, got shape {arr.shape}")
    if arr.shape[1] % 8 != 0:
        raise ValueError(
            f"the number of bits K={arr.shape[1]} must be a multiple of 8 to pack codes into bytes"
        )
    check_binary(arr, "bits")
    return _packbits(arr)


def unpack_codes(packed: Any, num_bits: int) -> np.ndarray:
    """Unpack ``uint8`` rows ``(N, num_bits / 8)`` from :func:`pack_codes` back into 0/1 codes ``(N, num_bits)``.

    Example::

        packed = pack_codes(bits)
        again = unpack_codes(packed, num_bits=bits.shape[1])
        assert (again == bits).all()
    """
    arr = to_numpy(packed, "packed")
    if arr.ndim != 2:
        raise ValueError(f"packed codes must be a 2-D (N, K/8) array, got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise TypeError(f"packed codes must have dtype uint8, got {arr.dtype}")
    if not isinstance(num_bits, (int, np.integer)) or num_bits <= 0 or num_bits % 8 != 0:
        raise ValueError(f"num_bits must be a positive multiple of 8, got {num_bits!r}")
    if arr.shape[1] * 8 != num_bits:
        raise ValueError(
            f"packed codes have {arr.shape[1]} bytes per row ({arr.shape[1] * 8} bits), "
            f"but num_bits={num_bits}"
        )
    return np.unpackbits(arr, axis=1, count=num_bits)
