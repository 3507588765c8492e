"""Hashing models: timm backbones with a sigmoid hash head."""

from .hash_head import HashHead
from .hashing_model import HashingModel, create_hashing_model

__all__ = ["HashHead", "HashingModel", "create_hashing_model"]
