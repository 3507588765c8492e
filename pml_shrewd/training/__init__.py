"""Training: plain-data configs and an accelerate trainer."""

from .config import VARIANTS, TrainConfig
from .inference import encode_dataset
from .trainer import Trainer, build_objective, gather_with_grad, load_trained_model

__all__ = [
    "VARIANTS",
    "TrainConfig",
    "encode_dataset",
    "Trainer",
    "build_objective",
    "gather_with_grad",
    "load_trained_model",
]
