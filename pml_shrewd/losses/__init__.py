from .pml_baselines import PML_BASELINES, pml_baseline_loss
from .semantic_distance_loss import SemanticDistanceLoss
from .shred_loss import SHREDLoss

__all__ = ["PML_BASELINES", "SemanticDistanceLoss", "SHREDLoss", "pml_baseline_loss"]
