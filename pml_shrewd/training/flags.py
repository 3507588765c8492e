"""Command-line flags for :class:`~pml_shrewd.training.TrainConfig`: one ``--flag`` per field, with
its one-line description. Shared by the ``pml-shrewd`` CLI and the benchmark commands, so it lives
below both (the benchmarks must not import the CLI)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing

ALIASES = {"data_path": ["--data"], "num_bits": ["--bits"]}


# ---------------------------------------------------------------------- train flags
# One line of --help per TrainConfig field. A field missing here falls back to its comment in
# training/config.py (then to a bare "(default X)"); tests/test_cli.py checks that every field
# has a description, so a new field needs a line here or a comment there.
FIELD_HELP = {
    # data
    "dataset": "data layout: auto (guess from the path) | cifar10 | cifar100 | npz | folder | captions",
    "data_path": "data folder, .npz file or captions CSV/JSONL",
    "download": "download torchvision's CIFAR data if it is missing",
    "test_fraction": "fraction held out as queries when the data has no test split",
    "max_train_samples": "random training subset of this size (a quicker run)",
    "max_test_samples": "random query subset of this size",
    "semantic": "semantic distances: hierarchy (WordNet / --hierarchy-file) | label (0/1) | sentence",
    "hierarchy_file": "parent-child hierarchy file for --semantic hierarchy (default: WordNet)",
    "sentence_model": "sentence-transformers model name or folder for --semantic sentence",
    # model
    "backbone": "timm model name (any of timm.list_models())",
    "num_bits": "code length K (bits per hash code)",
    "pretrained": "start from timm's pretrained weights (Hugging Face hub; offline: --pretrained-file)",
    "pretrained_file": "local backbone weights (.pth/.safetensors) instead of the hub; works offline",
    "small_images": "32x32 inputs (CIFAR): 3x3 stride-1 stem for timm ResNets, else upsampling",
    "image_size": "input size (square side) of the transforms",
    "crop_pct": "eval transform's centre-crop fraction (default: the timm model's; 1.0: the whole image)",
    "hidden_dim": "hidden width of an MLP hash head (default: a linear head)",
    "batch_norm": "BatchNorm on the hash layer's pre-activations (keeps bits centred on 0.5)",
    "freeze_backbone": "train the hash head only, on fixed (e.g. pretrained) features",
    "cache_features": "with --freeze-backbone: compute backbone features once (cached) and train on them",
    "standardize_features": "standardise the head's input with the training features' mean and std",
    "drop_rate": "dropout on the hash head's input features during training",
    # objective
    "variant": "objective: shrewd | shred | sim | cls | kl_cls | contrastive | triplet | multisimilarity",
    "lambda_kl": "weight of the KL bit-distribution term L_KL (relative to L_sim)",
    "lambda_cls": "weight of the classification term L_cls (shred, cls, kl_cls)",
    "gamma": "gamma of the pair weight w = gamma^rho / (gamma + d)^rho",
    "rho": "rho of the pair weight (0: all pairs weigh the same)",
    "sim_error": "L_sim's error on distances: squared | absolute",
    "detach_tau_z": "treat L_sim's code-distance scale as a constant (no gradient through it)",
    "balance_levels": "equal total weight per semantic-distance level in L_sim",
    "semantic_power": "L_sim trains on d ** semantic_power (below 1 widens near-class gaps)",
    "alpha": "alpha of L_KL's target Beta(alpha, beta) per bit",
    "beta": "beta of L_KL's target Beta(alpha, beta) per bit",
    "kl_p": "p of the p-norm for L_KL's nearest-neighbour estimate",
    "kl_samples": "target draws per L_KL call (default: the batch size)",
    "kl_warmup": "fraction of the run over which lambda_kl ramps up linearly from 0",
    "code_sharpness": "sigmoid sharpness the codes reach at the end of the run (HashNet's continuation; 1: off)",
    "memory_size": "cross-batch memory of this many past codes (0: none)",
    # optimisation
    "epochs": "passes over the training set",
    "steps": "a step budget instead of epochs (the schedule spans it)",
    "max_steps": "stop after this many steps (the schedule still spans the whole run)",
    "batch_size": "global batch size (split across processes)",
    "samples_per_class": "class-balanced batches: batch_size / m classes with m images each",
    "lr": "learning rate",
    "weight_decay": "weight decay",
    "optimizer": "optimizer: adamw | adam | sgd",
    "momentum": "SGD momentum",
    "scheduler": "learning-rate schedule: cosine | step | none",
    "warmup_steps": "linear learning-rate warm-up steps",
    "grad_clip": "clip the gradient norm to this value (default: no clipping)",
    # bookkeeping
    "eval_every": "evaluate every N epochs (0: only at the end)",
    "checkpoint_every": "write a resumable checkpoint every N epochs (0: none)",
    "checkpoint_every_steps": "also write a checkpoint every N steps",
    "keep_checkpoints": "how many checkpoints to keep",
    "output_dir": "run folder: model, metrics, logs, checkpoints",
    "seed": "random seed",
    "mixed_precision": "mixed precision: auto | no | fp16 | bf16",
    "num_workers": "data-loader worker processes",
    "caption_target": "captioned images: mean of their captions' embeddings, or one caption drawn per epoch (random)",
    "train_captions": "caption positions that train (e.g. 0 1 2); the rest may be held out",
    "held_out_captions": "caption positions held out for evaluation (e.g. 3 4)",
    "pseudo_labels": "label-based losses on captioned data: train on this many k-means clusters of the caption embeddings",
    "query_split": "captioned data with splits: queries from test, or dev to tune",
    "hp_k": "k of the evaluation's mAHP@k",
    "max_db_samples": "random database subset of this size for evaluation",
    "print_epochs": "print one summary line per epoch",
    "extra": "free-form extra settings",
}


def _comment_help(cls: type) -> dict[str, str]:
    """Field descriptions from the comments in ``cls``'s source (trailing, or the lines above)."""
    import inspect
    import re

    try:
        lines = inspect.getsource(cls).splitlines()
    except (OSError, TypeError):
        return {}
    found, above = {}, []
    field_re = re.compile(r"^\s+(\w+)\s*:[^#]*?(?:#\s*(.*))?$")
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = field_re.match(line)
        if match and not stripped.startswith(("def ", "@", "return")):
            comment = match.group(2) or (" ".join(above) if len(" ".join(above).split()) > 1 else "")
            if comment:
                found[match.group(1)] = comment
        above = []
    return found


def field_help(cls: type | None = None) -> dict[str, str]:
    """A one-line description for every field of ``cls`` (default :class:`TrainConfig`).

    Order of preference: :data:`FIELD_HELP`, the field's comment in the source, else ``""``.
    """
    if cls is None:
        from .config import TrainConfig as cls
    comments = None
    out = {}
    for f in dataclasses.fields(cls):
        text = FIELD_HELP.get(f.name)
        if text is None:
            if comments is None:
                comments = _comment_help(cls)
            text = comments.get(f.name, "")
        out[f.name] = text
    return out


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--flag`` per :class:`TrainConfig` field (defaults None: the config file or dataclass wins)."""
    from .config import TrainConfig

    hints = typing.get_type_hints(TrainConfig)
    descriptions = field_help(TrainConfig)
    group = parser.add_argument_group("training configuration (override --config)")
    for f in dataclasses.fields(TrainConfig):
        if f.name == "extra":
            continue
        flags = [f"--{f.name.replace('_', '-')}", *ALIASES.get(f.name, [])]
        hint = hints[f.name]
        args = typing.get_args(hint)
        base = next((a for a in args if a is not type(None)), hint) if args else hint
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        text = descriptions.get(f.name, "")
        help_text = (f"{text} (default {default})" if text else f"(default {default})").replace("%", "%%")
        if base is bool:
            group.add_argument(
                *flags, dest=f.name, action=argparse.BooleanOptionalAction, default=None, help=help_text
            )
        elif base is str and type(None) in args:  # optional: "none" unsets a config file's value
            group.add_argument(
                *flags, dest=f.name, type=_optional_str, default=None, help=help_text + "; none: unset"
            )
        elif base in (int, float, str):
            group.add_argument(*flags, dest=f.name, type=base, default=None, help=help_text)
        elif typing.get_origin(base) is list and typing.get_args(base)[0] in (int, float, str):
            item = typing.get_args(base)[0]  # e.g. --train-captions 0 1 2
            group.add_argument(*flags, dest=f.name, type=item, nargs="+", default=None, help=help_text)
        else:  # e.g. a dict or list field: given as JSON on the command line
            group.add_argument(*flags, dest=f.name, type=json.loads, default=None, help=help_text + " (JSON)")


def _optional_str(value: str):
    from .config import NO_VALUE

    return NO_VALUE if value.lower() == "none" else value


__all__ = ["ALIASES", "FIELD_HELP", "add_config_flags", "field_help"]
