from .cross_batch_memory import CrossBatchMemory
from .pml_baselines import PML_BASELINES, pml_baseline_loss
from .relabeled_loss import RelabeledLoss
from .semantic_distance_loss import NonFiniteLossError, SemanticDistanceLoss
from .shred_loss import SHREDLoss
from .variants import VARIANTS, Variant, build_objective, get_variant, kl_regularizer

__all__ = [
    "CrossBatchMemory",
    "NonFiniteLossError",
    "PML_BASELINES",
    "RelabeledLoss",
    "SemanticDistanceLoss",
    "SHREDLoss",
    "pml_baseline_loss",
    "VARIANTS",
    "Variant",
    "build_objective",
    "get_variant",
    "kl_regularizer",
]
