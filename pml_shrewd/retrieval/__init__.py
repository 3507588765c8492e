"""Retrieval and evaluation: binary codes, faiss Hamming search, mAP / P@k / HP@k / mAHP@k (with
``ties=``), and the anchors' protocols (Barz & Denzler leave-one-out, DeepHash-pytorch mAP@topk,
Making Better Mistakes hdist@k / mistake severity), and held-out caption scoring (graded mAHP@k and
nDCG@k by sentence or model-free word relevance)."""

from .accuracy_calculator import HammingKNN, HashingAccuracyCalculator
from .captions import (
    CAPTION_RELEVANCES,
    caption_relevance,
    evaluate_caption_codes,
    evaluate_caption_embeddings,
    ndcg_at_k,
)
from .codes import binarize, pack_codes, unpack_codes
from .hash_index import HashIndex
from .metrics import (
    bit_balance,
    evaluate_codes,
    evaluate_embeddings,
    hp_at_k,
    mahp_at_k,
    mean_average_precision,
    precision_at_k,
)
from .plots import plot_code_histogram, plot_hp_curves
from .protocols import deephash_map, hierarchical_distance_at_k, leave_one_out_mahp, mistake_severity

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
    "evaluate_embeddings",
    "bit_balance",
    "leave_one_out_mahp",
    "deephash_map",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "CAPTION_RELEVANCES",
    "caption_relevance",
    "evaluate_caption_codes",
    "evaluate_caption_embeddings",
    "ndcg_at_k",
    "HashingAccuracyCalculator",
    "HammingKNN",
    "plot_hp_curves",
    "plot_code_histogram",
]
