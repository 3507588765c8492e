"""Training configuration as plain data (JSON round-trips; YAML if PyYAML is installed)."""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from dataclasses import dataclass
from typing import Any


def _variant_table() -> dict:
    # Imported when needed: reading a config (e.g. for ``--help``) must not import torch.
    from ..losses.variants import VARIANTS as table

    return table


# Fields holding file paths (made absolute when they exist; relative to a config file when found there).
class _NoValue:
    """An override that sets an optional field to ``None`` (``--pretrained-file none``): a plain
    ``None`` override means "not given" and keeps the config file's value."""

    def __repr__(self) -> str:
        return "NO_VALUE"


NO_VALUE = _NoValue()

PATH_FIELDS = ("data_path", "hierarchy_file", "pretrained_file", "holdout_classes", "class_groups")


@dataclass
class TrainConfig:
    """Everything a training run needs, as plain data; defaults are the paper's settings
    where the paper gives one (gamma, rho, alpha, beta), else the library's.

    Variants are the keys of :data:`pml_shrewd.losses.VARIANTS` (Arponen & Bishop,
    arXiv 2005.04917, table 1): ``shrewd`` L_sim + lambda_kl L_KL (weak supervision, no
    classes needed); ``shred`` L_sim + lambda_kl L_KL + lambda_cls L_cls; ``sim`` L_sim
    alone; ``cls`` L_cls alone; ``kl_cls`` lambda_kl L_KL + lambda_cls L_cls. Baselines on
    class labels: ``contrastive``, ``triplet``, ``multisimilarity``
    (:func:`~pml_shrewd.losses.pml_baseline_loss`: PML's losses and miners). The tuned
    settings of the benchmarks are shipped as JSON files in ``recipes/configs/``.

    Example::

        cfg = TrainConfig(data_path="examples/data/cifar10-sample", backbone="resnet18", epochs=5)
        cfg.save("run.json")
        cfg = TrainConfig.load("run.json", epochs=10)   # file, then overrides
    """

    # data
    dataset: str = "auto"  # auto | cifar10 | cifar100 | npz | folder | captions
    data_path: str = "examples/data/cifar10-sample"
    download: bool = False
    test_fraction: float = 0.2
    # > 0: queries are this fraction of the training split (seeded) and the database and
    # training data the rest; the test split is never read. Tune on it.
    validation_fraction: float = 0.0
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    # Unseen-class protocol: a file of class names (one a line, "#" comments) whose images no
    # training path sees; the database and the queries keep them, and the evaluation reports the
    # unseen-class and seen-class queries apart ("mAHP@k [unseen]", "mAP [seen]", ...).
    holdout_classes: str | None = None
    # A file of class groups, "group class class ..." a line (e.g. CIFAR-100's superclasses): the
    # evaluation adds, per query, the share of its top hp_k in the query's group ("same_group@k").
    class_groups: str | None = None
    semantic: str = "hierarchy"  # hierarchy | label | sentence
    hierarchy_file: str | None = None
    sentence_model: str | None = None
    # Captioned data with several captions per image: the image's target is the normalised mean
    # of its captions' embeddings ("mean") or one caption drawn per epoch ("random");
    # train_captions / held_out_captions pick caption positions (e.g. [0, 1, 2] / [3, 4]).
    caption_target: str = "mean"
    train_captions: list[int] | None = None
    held_out_captions: list[int] | None = None
    # Label-based losses (PML baselines, L_cls) on captioned data train on this many pseudo-classes:
    # spherical k-means of the training images' mean caption embeddings (CaptionSetDistance.cluster_labels).
    pseudo_labels: int | None = None
    # Captioned data with splits (Flickr8k's splits.csv): queries from "test", or "dev" to tune.
    query_split: str = "test"
    # model
    backbone: str = "resnet18"
    num_bits: int = 64
    pretrained: bool = False
    pretrained_file: str | None = None
    small_images: bool = False
    image_size: int | None = None
    crop_pct: float | None = None
    hidden_dim: int | None = None
    batch_norm: bool = False
    freeze_backbone: bool = False  # train the hash head only, on fixed (e.g. pretrained) features
    # With freeze_backbone: run the backbone once over both splits (eval transform, cached
    # on disk), then train the head on the cached features (data.FeatureSamples).
    cache_features: bool = False
    # Standardise the head's input features (mean / std of the training features, stored
    # in the head): the frozen-feature benchmark's setting.
    standardize_features: bool = False
    drop_rate: float = 0.0  # dropout on the head's input features during training
    # Fine-tuning mode (with cache_features): the backbone's last train_stages stages (block
    # groups; EfficientNet's also its 1x1 head conv) train with the loss, on cached float16
    # activations of the frozen rest (models.BackboneTrunk / BackboneTail). 0: a frozen backbone.
    train_stages: int = 0
    flip_activations: bool = False  # fine-tuning mode: mirror each cached map with probability 1/2
    # Fine-tuning mode: train the tail on channels-last maps with its 1x1 convolutions as matmuls
    # (models.PointwiseAsMatmul): about 20% faster CPU steps, equal to float rounding (not bitwise).
    fast_tail: bool = False
    # Learning-rate factor of the trained backbone layers (the tail in fine-tuning mode, the
    # whole backbone without freeze_backbone) relative to lr.
    backbone_lr_scale: float = 1.0
    # objective
    variant: str = "shrewd"
    # Weights relative to L_sim (a mean of small weighted errors): tuned on a CIFAR-100
    # validation split (BENCHMARKS.md); lambda_kl = 0.1 or more spread same-class codes apart.
    lambda_kl: float = 0.001
    lambda_cls: float = 0.01
    gamma: float = 0.1  # the paper's pair weight w = gamma^rho / (gamma + d)^rho
    rho: float = 2.0
    sim_error: str = "squared"  # squared | absolute (SemanticDistanceLoss(error=...))
    detach_tau_z: bool = False  # the code-distance scale carries gradient (exactly scale-free)
    # Equal total weight per semantic-distance level (SemanticDistanceLoss); the CPU
    # benchmark's validation split preferred it with rho = 0 (BENCHMARKS.md).
    balance_levels: bool = False
    # L_sim trains on d ** semantic_power (PowerDistance; evaluation keeps d): below 1 it
    # widens the gap between a class and its nearest classes (BENCHMARKS.md).
    semantic_power: float = 1.0
    alpha: float = 0.1  # L_KL's target Beta(alpha, beta)^K
    beta: float = 0.1
    kl_p: int = 2  # L_KL's nearest neighbours in the p-norm
    kl_samples: int | None = None  # target draws per call (None: the batch size)
    kl_warmup: float = 0.0  # fraction of the run over which lambda_kl ramps up linearly from 0
    # The codes' sigmoid sharpness at the end of the run, raised linearly from 1 over the run
    # (training.CodeSharpening, HashNet's continuation); 1: a plain sigmoid throughout.
    code_sharpness: float = 1.0
    memory_size: int = 0  # > 0: a cross-batch memory of this many past codes (losses.CrossBatchMemory)
    # optimisation
    epochs: int = 10
    steps: int | None = None  # a step budget instead of epochs (the schedule spans it)
    max_steps: int | None = None  # stop early after this many steps; the schedule still spans the run
    batch_size: int = 64  # global batch: split across processes
    # Class-balanced batches of batch_size / m classes x m images (data.class_balanced_order):
    # random batches of a many-class data set hold few same-class pairs for L_sim.
    samples_per_class: int | None = None
    lr: float = 1e-3
    weight_decay: float = 5e-4
    optimizer: str = "adamw"  # adamw | adam | sgd
    momentum: float = 0.9
    scheduler: str = "cosine"  # cosine | step | none
    warmup_steps: int = 0
    grad_clip: float | None = None
    # bookkeeping
    eval_every: int = 1  # epochs; 0 evaluates only at the end
    checkpoint_every: int = 1  # epochs; 0 disables epoch checkpoints
    checkpoint_every_steps: int | None = None
    keep_checkpoints: int = 2
    output_dir: str = "runs/shrewd"
    seed: int = 0
    mixed_precision: str = "auto"  # auto | no | fp16 | bf16
    num_workers: int | None = None  # loader processes; None: the cores less one (0 on cached features)
    hp_k: int = 250
    max_db_samples: int | None = None
    print_epochs: bool = True  # one summary line per epoch on the console

    def __post_init__(self) -> None:
        # Paths that exist are stored absolute, so a saved run works from any directory.
        for name in PATH_FIELDS:
            value = getattr(self, name)
            if isinstance(value, (str, os.PathLike)) and os.path.exists(os.path.expanduser(value)):
                setattr(self, name, os.path.abspath(os.path.expanduser(value)))
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first bad field."""
        if self.variant not in _variant_table():
            raise ValueError(
                f"TrainConfig.variant must be one of {tuple(_variant_table())}, got {self.variant!r}"
            )
        if self.semantic not in ("hierarchy", "label", "sentence"):
            raise ValueError(f"TrainConfig.semantic must be hierarchy|label|sentence, got {self.semantic!r}")
        if self.optimizer not in ("adamw", "adam", "sgd"):
            raise ValueError(f"TrainConfig.optimizer must be adamw|adam|sgd, got {self.optimizer!r}")
        if self.scheduler not in ("cosine", "step", "none"):
            raise ValueError(f"TrainConfig.scheduler must be cosine|step|none, got {self.scheduler!r}")
        if self.mixed_precision not in ("auto", "no", "fp16", "bf16"):
            raise ValueError(
                f"TrainConfig.mixed_precision must be auto|no|fp16|bf16, got {self.mixed_precision!r}"
            )
        for name in ("num_bits", "epochs", "batch_size", "hp_k", "keep_checkpoints"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.batch_size < 2:
            raise ValueError("TrainConfig.batch_size must be >= 2 (the losses compare pairs)")
        if self.pseudo_labels is not None and (
            isinstance(self.pseudo_labels, bool) or self.pseudo_labels < 2
        ):
            raise ValueError(
                f"TrainConfig.pseudo_labels must be a number of clusters >= 2, got {self.pseudo_labels!r}"
            )
        if self.caption_target not in ("mean", "random"):
            raise ValueError(f"TrainConfig.caption_target must be mean|random, got {self.caption_target!r}")
        if self.sim_error not in ("squared", "absolute"):
            raise ValueError(f"TrainConfig.sim_error must be squared|absolute, got {self.sim_error!r}")
        if self.cache_features and not self.freeze_backbone:
            raise ValueError(
                "TrainConfig.cache_features needs freeze_backbone=True (cached features are fixed)"
            )
        if (
            not isinstance(self.train_stages, int)
            or isinstance(self.train_stages, bool)
            or self.train_stages < 0
        ):
            raise ValueError(f"TrainConfig.train_stages must be an int >= 0, got {self.train_stages!r}")
        if self.train_stages and not self.cache_features:
            raise ValueError(
                "TrainConfig.train_stages (fine-tuning mode) needs cache_features=True: the tail trains "
                "on cached activations of the frozen trunk"
            )
        if self.flip_activations and not self.train_stages:
            raise ValueError("TrainConfig.flip_activations needs train_stages > 0 (it flips cached maps)")
        if self.fast_tail and not self.train_stages:
            raise ValueError("TrainConfig.fast_tail needs train_stages > 0 (it runs the trained tail)")
        if not self.backbone_lr_scale > 0:
            raise ValueError(f"TrainConfig.backbone_lr_scale must be > 0, got {self.backbone_lr_scale!r}")
        if self.standardize_features and not self.cache_features:
            raise ValueError("TrainConfig.standardize_features needs cache_features=True")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError(
                f"TrainConfig.validation_fraction must be in [0, 1), got {self.validation_fraction!r}"
            )
        if not 0.0 <= self.drop_rate < 1.0:
            raise ValueError(f"TrainConfig.drop_rate must be in [0, 1), got {self.drop_rate!r}")
        if not self.code_sharpness >= 1.0:
            raise ValueError(f"TrainConfig.code_sharpness must be >= 1, got {self.code_sharpness!r}")
        if not 0.0 <= self.kl_warmup <= 1.0:
            raise ValueError(f"TrainConfig.kl_warmup must be in [0, 1], got {self.kl_warmup!r}")
        for name in ("memory_size", "warmup_steps"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("steps", "max_steps", "checkpoint_every_steps", "kl_samples"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValueError(f"TrainConfig.{name} must be None or a positive int, got {value!r}")
        m = self.samples_per_class
        if m is not None and (not isinstance(m, int) or m < 2 or self.batch_size % m):
            raise ValueError(
                "TrainConfig.samples_per_class must be None or an int >= 2 that divides "
                f"batch_size ({self.batch_size}), got {m!r}"
            )
        for name in ("lr", "gamma", "semantic_power"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        for name in ("lambda_kl", "lambda_cls", "weight_decay", "rho"):
            if getattr(self, name) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if not (self.alpha > 0 and self.beta > 0):
            raise ValueError(f"TrainConfig.alpha and beta must be > 0, got {self.alpha}, {self.beta}")

    def objective_settings(self) -> dict[str, Any]:
        """The keyword arguments of :func:`pml_shrewd.losses.build_objective` held here."""
        names = (
            "lambda_kl", "lambda_cls", "gamma", "rho", "sim_error", "balance_levels", "detach_tau_z",
            "semantic_power", "alpha", "beta", "kl_p", "kl_samples", "memory_size",
        )  # fmt: skip
        return {name: getattr(self, name) for name in names}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        data = dict(data)
        if "extra" in data:  # configs written before 0.2 carry an unused "extra" field
            if data.pop("extra"):
                warnings.warn("TrainConfig: the 'extra' field is gone and was never read", stacklevel=2)
        merged = {
            **data,
            **{k: (None if v is NO_VALUE else v) for k, v in overrides.items() if v is not None},
        }
        unknown = sorted(set(merged) - known)
        if unknown:
            raise ValueError(f"TrainConfig: unknown fields {unknown}")
        return cls(**merged)

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w") as f:
            json.dump(self.to_dict(), f, indent=2)

    @classmethod
    def load(cls, path: str | os.PathLike, **overrides: Any) -> TrainConfig:
        """Read a JSON (or, with PyYAML installed, YAML) config; ``overrides`` win."""
        path = os.fspath(path)
        with open(path) as f:
            if path.endswith((".yaml", ".yml")):
                try:
                    import yaml
                except ImportError as err:
                    raise ImportError("reading YAML configs needs PyYAML (pip install pyyaml)") from err
                data = yaml.safe_load(f)
            else:
                data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"TrainConfig: {path!r} must hold a mapping of fields")
        # Files named relative to the config (a shipped hierarchy) are found beside it.
        folder = os.path.dirname(os.path.abspath(path))
        for name in PATH_FIELDS:
            value = data.get(name)
            if (
                isinstance(value, str)
                and not os.path.isabs(value)
                and os.path.exists(os.path.join(folder, value))
            ):
                data[name] = os.path.normpath(os.path.join(folder, value))
        return cls.from_dict(data, **overrides)
