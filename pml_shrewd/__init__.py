"""pml-shrewd: semantic-hierarchy deep hashing (SHREWD / SHRED) for pytorch-metric-learning.

Binary codes whose Hamming distances follow semantic distances between targets
(class hierarchies, captions), trained with PML-compatible losses and searched
with faiss binary indexes.

Names are imported lazily (PEP 562): ``import pml_shrewd`` (and the ``pml-shrewd`` command's
``--help``) does not load torch, timm or faiss until something that needs them is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same names, eagerly, for type checkers and IDEs
    from .data import (
        CaptionedImages,
        FolderImages,
        ImageFiles,
        NpzImages,
        TorchvisionCIFAR,
        build_datasets,
        semantic_distance_for,
    )
    from .losses import CrossBatchMemory, NonFiniteLossError, RelabeledLoss, SemanticDistanceLoss, SHREDLoss
    from .models import (
        HashHead,
        HashingModel,
        TextHashEncoder,
        create_hashing_model,
        efficientnet_lite0_weights,
    )
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

# public name -> submodule that defines it
_LAZY = {
    "CaptionedImages": "data",
    "FolderImages": "data",
    "ImageFiles": "data",
    "NpzImages": "data",
    "TorchvisionCIFAR": "data",
    "build_datasets": "data",
    "semantic_distance_for": "data",
    "CrossBatchMemory": "losses",
    "RelabeledLoss": "losses",
    "NonFiniteLossError": "losses",
    "SemanticDistanceLoss": "losses",
    "SHREDLoss": "losses",
    "HashHead": "models",
    "HashingModel": "models",
    "TextHashEncoder": "models",
    "create_hashing_model": "models",
    "efficientnet_lite0_weights": "models",
    "EmpiricalKLRegularizer": "regularizers",
    "HashIndex": "retrieval",
    "HashingAccuracyCalculator": "retrieval",
    "binarize": "retrieval",
    "evaluate_codes": "retrieval",
    "evaluate_embeddings": "retrieval",
    "hp_at_k": "retrieval",
    "mahp_at_k": "retrieval",
    "mean_average_precision": "retrieval",
    "pack_codes": "retrieval",
    "plot_code_histogram": "retrieval",
    "plot_hp_curves": "retrieval",
    "precision_at_k": "retrieval",
    "unpack_codes": "retrieval",
    "HierarchyDistance": "semantic_distances",
    "LabelDistance": "semantic_distances",
    "MatrixDistance": "semantic_distances",
    "PowerDistance": "semantic_distances",
    "SemanticDistance": "semantic_distances",
    "SentenceEmbeddingDistance": "semantic_distances",
    "load_wordnet": "semantic_distances",
    "TrainConfig": "training",
    "Trainer": "training",
    "encode_dataset": "training",
    "load_trained_model": "training",
}
_SUBMODULES = {
    "data",
    "losses",
    "models",
    "regularizers",
    "retrieval",
    "semantic_distances",
    "training",
    "utils",
    "cli",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | _SUBMODULES)


__all__ = [
    # losses and regularizers
    "SemanticDistanceLoss",
    "SHREDLoss",
    "CrossBatchMemory",
    "RelabeledLoss",
    "NonFiniteLossError",
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
    "evaluate_embeddings",
    "HashingAccuracyCalculator",
    "plot_hp_curves",
    "plot_code_histogram",
    # models, data, training
    "HashHead",
    "HashingModel",
    "TextHashEncoder",
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
