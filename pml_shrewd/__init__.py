"""pml-shrewd: semantic-hierarchy deep hashing (SHREWD / SHRED) for pytorch-metric-learning.

Binary codes whose Hamming distances follow semantic distances between targets
(class hierarchies, captions), trained with PML-compatible losses and searched
with faiss binary indexes.
"""

from .data import (
    CaptionedImages,
    FolderImages,
    ImageFiles,
    NpzImages,
    TorchvisionCIFAR,
    build_datasets,
    semantic_distance_for,
)
from .losses import SemanticDistanceLoss, SHREDLoss
from .models import HashHead, HashingModel, create_hashing_model, efficientnet_lite0_weights
from .regularizers import EmpiricalKLRegularizer
from .retrieval import (
    HashIndex,
    HashingAccuracyCalculator,
    binarize,
    evaluate_codes,
    hp_at_k,
    mahp_at_k,
    mean_average_precision,
    pack_codes,
    plot_code_histogram,
    plot_hp_curves,
    precision_at_k,
    unpack_codes,
)
from .semantic_distances import (
    HierarchyDistance,
    LabelDistance,
    MatrixDistance,
    PowerDistance,
    SemanticDistance,
    SentenceEmbeddingDistance,
    load_wordnet,
)
from .training import TrainConfig, Trainer, encode_dataset, load_trained_model

__version__ = "0.1.0"

__all__ = [
    # losses and regularizers
    "SemanticDistanceLoss",
    "SHREDLoss",
    "EmpiricalKLRegularizer",
    # semantic-distance providers
    "SemanticDistance",
    "HierarchyDistance",
    "SentenceEmbeddingDistance",
    "MatrixDistance",
    "PowerDistance",
    "LabelDistance",
    "load_wordnet",
    # retrieval and evaluation
    "HashIndex",
    "binarize",
    "pack_codes",
    "unpack_codes",
    "mean_average_precision",
    "precision_at_k",
    "hp_at_k",
    "mahp_at_k",
    "evaluate_codes",
    "HashingAccuracyCalculator",
    "plot_hp_curves",
    "plot_code_histogram",
    # models, data, training
    "HashHead",
    "HashingModel",
    "create_hashing_model",
    "efficientnet_lite0_weights",
    "CaptionedImages",
    "FolderImages",
    "ImageFiles",
    "NpzImages",
    "TorchvisionCIFAR",
    "build_datasets",
    "semantic_distance_for",
    "TrainConfig",
    "Trainer",
    "encode_dataset",
    "load_trained_model",
]
