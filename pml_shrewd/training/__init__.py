"""Training: plain-data configs, builders, and an accelerate trainer built from objects."""

import importlib

from .config import TrainConfig

# Imported on first use: reading a config (``pml-shrewd --help``) must not import torch.
_LAZY = {
    "build_run": "builders",
    "KLWarmup": "callbacks",
    "CodeSharpening": "callbacks",
    "RetrievalEvaluator": "evaluation",
    "CaptionRetrievalEvaluator": "evaluation",
    "encode_dataset": "inference",
    "Trainer": "trainer",
    "gather_with_grad": "trainer",
    "load_trained_model": "trainer",
    "train_text_encoder": "text_encoder",
    "text_to_image_figures": "text_encoder",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "build_objective":
        return _build_objective_from_config
    raise AttributeError(name)


def _build_objective_from_config(config: TrainConfig, provider, model):
    """Deprecated: ``pml_shrewd.losses.build_objective(config.variant, provider, embedding_size=...,
    num_classes=..., **config.objective_settings())``."""
    import warnings

    from ..losses import build_objective, get_variant

    warnings.warn(
        "pml_shrewd.training.build_objective(config, provider, model) is deprecated: use "
        "pml_shrewd.losses.build_objective(variant, provider, embedding_size=..., num_classes=..., ...)",
        DeprecationWarning,
        stacklevel=2,
    )
    return build_objective(
        config.variant,
        provider,
        embedding_size=model.num_bits,
        num_classes=model.num_classes if get_variant(config.variant).cls else None,
        **config.objective_settings(),
    )


__all__ = [
    "TrainConfig",
    "Trainer",
    "RetrievalEvaluator",
    "CaptionRetrievalEvaluator",
    "train_text_encoder",
    "text_to_image_figures",
    "KLWarmup",
    "CodeSharpening",
    "build_run",
    "encode_dataset",
    "gather_with_grad",
    "load_trained_model",
]
