from .semantic_distance_loss import SemanticDistanceLoss
from .shred_loss import SHREDLoss

__all__ = ["SemanticDistanceLoss", "SHREDLoss"]
