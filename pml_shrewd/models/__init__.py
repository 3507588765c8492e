"""Hashing models: timm backbones with a sigmoid hash head."""

from .hash_head import HashHead
from .hashing_model import HashingModel, create_hashing_model
from .text_encoder import TextHashEncoder
from .weights import convert_state_dict_in_order, efficientnet_lite0_weights

__all__ = [
    "HashHead",
    "HashingModel",
    "TextHashEncoder",
    "create_hashing_model",
    "convert_state_dict_in_order",
    "efficientnet_lite0_weights",
]
