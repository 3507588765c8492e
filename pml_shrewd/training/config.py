"""Training configuration as plain data (JSON round-trips; YAML if PyYAML is installed)."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from typing import Any

VARIANTS = ("shrewd", "shred", "sim", "cls", "kl_cls", "contrastive", "triplet", "multisimilarity")


@dataclass
class TrainConfig:
    """Everything a training run needs; defaults are the paper's settings.

    Variants (Arponen & Bishop, arXiv 2005.04917, table 1):
    ``shrewd`` L_sim + lambda_kl L_KL (weak supervision, no classes needed);
    ``shred`` L_sim + lambda_kl L_KL + lambda_cls L_cls; ``sim`` L_sim alone;
    ``cls`` L_cls alone; ``kl_cls`` lambda_kl L_KL + lambda_cls L_cls. Baselines on class
    labels: ``contrastive``, ``triplet``, ``multisimilarity``
    (:func:`~pml_shrewd.losses.pml_baseline_loss`: PML's losses and miners).

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
    max_train_samples: int | None = None
    max_test_samples: int | None = None
    semantic: str = "hierarchy"  # hierarchy | label | sentence
    hierarchy_file: str | None = None
    sentence_model: str | None = None
    # model
    backbone: str = "resnet18"
    num_bits: int = 64
    pretrained: bool = False
    pretrained_file: str | None = None
    small_images: bool = False
    image_size: int | None = None
    hidden_dim: int | None = None
    batch_norm: bool = False
    freeze_backbone: bool = False  # train the hash head only, on fixed (e.g. pretrained) features
    # objective
    variant: str = "shrewd"
    # Weights relative to L_sim (a mean of small weighted errors): tuned on a CIFAR-100
    # validation split (BENCHMARKS.md); lambda_kl = 0.1 or more spread same-class codes apart.
    lambda_kl: float = 0.001
    lambda_cls: float = 0.01
    gamma: float = 0.1
    rho: float = 2.0
    # Equal total weight per semantic-distance level (SemanticDistanceLoss); the CPU
    # benchmark's validation split preferred it with rho = 0 (BENCHMARKS.md).
    balance_levels: bool = False
    # L_sim trains on d ** semantic_power (PowerDistance; evaluation keeps d): below 1 it
    # widens the gap between a class and its nearest classes (BENCHMARKS.md).
    semantic_power: float = 1.0
    alpha: float = 0.1
    beta: float = 0.1
    # optimisation
    epochs: int = 10
    max_steps: int | None = None  # stop early after this many steps; the schedule still spans `epochs`
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
    num_workers: int = 0
    hp_k: int = 250
    max_db_samples: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise a ``ValueError`` naming the first bad field."""
        if self.variant not in VARIANTS:
            raise ValueError(f"TrainConfig.variant must be one of {VARIANTS}, got {self.variant!r}")
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
        for name in ("max_steps", "checkpoint_every_steps"):
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

    @property
    def uses_classifier(self) -> bool:
        return self.variant in ("shred", "cls", "kl_cls")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        merged = {**data, **{k: v for k, v in overrides.items() if v is not None}}
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
        return cls.from_dict(data, **overrides)
