"""Hashing models: timm backbones with a sigmoid hash head, and the cut of a backbone into a
frozen trunk and a trained tail (fine-tuning mode)."""

from .hash_head import HashHead
from .hashing_model import HashingModel, create_hashing_model
from .stages import BackboneTail, BackboneTrunk, PointwiseAsMatmul, TailHashModel, num_stages
from .text_encoder import TextHashEncoder
from .weights import convert_state_dict_in_order, efficientnet_lite0_weights

__all__ = [
    "BackboneTail",
    "BackboneTrunk",
    "PointwiseAsMatmul",
    "TailHashModel",
    "num_stages",
    "HashHead",
    "HashingModel",
    "TextHashEncoder",
    "create_hashing_model",
    "convert_state_dict_in_order",
    "efficientnet_lite0_weights",
]
