"""Retrieval and evaluation: binary codes, faiss Hamming search, mAP / P@k / HP@k / mAHP@k."""

from .accuracy_calculator import HammingKNN, HashingAccuracyCalculator
from .codes import binarize, pack_codes, unpack_codes
from .hash_index import HashIndex
from .metrics import (
    bit_balance,
    evaluate_codes,
    hp_at_k,
    mahp_at_k,
    mean_average_precision,
    precision_at_k,
)
from .plots import plot_code_histogram, plot_hp_curves

__all__ = [
    "HashIndex",
    "binarize",
    "pack_codes",
    "unpack_codes",
    "mean_average_precision",
    "precision_at_k",
    "hp_at_k",
    "mahp_at_k",
    "evaluate_codes",
    "bit_balance",
    "HashingAccuracyCalculator",
    "HammingKNN",
    "plot_hp_curves",
    "plot_code_histogram",
]
