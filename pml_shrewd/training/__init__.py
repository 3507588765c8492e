"""Training: plain-data configs and an accelerate trainer."""

from .config import VARIANTS, TrainConfig
from .trainer import Trainer, build_objective, gather_with_grad, load_trained_model

__all__ = ["VARIANTS", "TrainConfig", "Trainer", "build_objective", "gather_with_grad", "load_trained_model"]
