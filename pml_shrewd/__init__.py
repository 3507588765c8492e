"""pml-shrewd: semantic-hierarchy deep hashing (SHREWD / SHRED) for pytorch-metric-learning.

Binary codes whose Hamming distances follow semantic distances between targets
(class hierarchies, captions), trained with PML-compatible losses and searched
with faiss binary indexes.
"""

__version__ = "0.1.0"

# --- semantic-distance providers ---
# --- models, data, training ---
from .data import (  # noqa: E402,F401
    CaptionedImages,
    FolderImages,
    ImageFiles,
    NpzImages,
    TorchvisionCIFAR,
    build_datasets,
    semantic_distance_for,
)

# --- losses and regularizers ---
from .losses import SemanticDistanceLoss, SHREDLoss  # noqa: E402,F401
from .models import HashHead, HashingModel, create_hashing_model  # noqa: E402,F401
from .regularizers import EmpiricalKLRegularizer  # noqa: E402,F401

# --- retrieval and evaluation ---
from .retrieval import (  # noqa: E402,F401
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
from .semantic_distances.base import SemanticDistance  # noqa: E402,F401
from .semantic_distances.hierarchy import HierarchyDistance  # noqa: E402,F401
from .semantic_distances.label import LabelDistance  # noqa: E402,F401
from .semantic_distances.matrix import MatrixDistance  # noqa: E402,F401
from .semantic_distances.sentence import SentenceEmbeddingDistance  # noqa: E402,F401
from .semantic_distances.wordnet import load_wordnet  # noqa: E402,F401
from .training import TrainConfig, Trainer, encode_dataset, load_trained_model  # noqa: E402,F401
