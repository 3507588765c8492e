"""The one table of training objectives (the paper's ablation and PML's baselines) and their builder.

Every training path (the trainer, the CLI, the benchmarks) names an objective by its key here
and builds it with :func:`build_objective`, so a row of a table always means the same loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..semantic_distances import SemanticDistance
from .pml_baselines import PML_BASELINES, pml_baseline_loss


@dataclass(frozen=True)
class Variant:
    """Which terms an objective has: L_sim, L_KL, L_cls (the paper's table 1), or a PML baseline."""

    name: str  # the row name of tables, results JSON and code files
    sim: bool = False
    kl: bool = False
    cls: bool = False
    pml: str | None = None  # a pml_baseline_loss name

    @property
    def needs_class_labels(self) -> bool:
        return self.cls or self.pml is not None


# Arponen & Bishop (arXiv 2005.04917), table 1, then PML's own losses on class labels.
VARIANTS: dict[str, Variant] = {
    "cls": Variant("L_cls", cls=True),
    "sim": Variant("L_sim", sim=True),
    "kl_cls": Variant("L_KL + L_cls", kl=True, cls=True),
    "shrewd": Variant("SHREWD (L_sim + L_KL)", sim=True, kl=True),
    "shred": Variant("SHRED (L_sim + L_KL + L_cls)", sim=True, kl=True, cls=True),
    "contrastive": Variant("PML ContrastiveLoss", pml="contrastive"),
    "triplet": Variant("PML TripletMarginLoss + miner", pml="triplet"),
    "multisimilarity": Variant("PML MultiSimilarityLoss + miner", pml="multisimilarity"),
}
assert set(PML_BASELINES) == {v.pml for v in VARIANTS.values() if v.pml}


def get_variant(key: str) -> Variant:
    """The :class:`Variant` of ``key`` (a ``VARIANTS`` key), or a ``ValueError`` listing the keys."""
    if key not in VARIANTS:
        raise ValueError(f"unknown objective variant {key!r}: one of {tuple(VARIANTS)}")
    return VARIANTS[key]


def kl_regularizer(alpha: float = 0.1, beta: float = 0.1, p: int = 2, num_target_samples: int | None = None):
    """SHREWD's L_KL as a PML regulariser (nearest neighbours in the ``p``-norm)."""
    from pytorch_metric_learning.distances import LpDistance

    from ..regularizers import EmpiricalKLRegularizer

    return EmpiricalKLRegularizer(
        alpha,
        beta,
        num_target_samples=num_target_samples,
        distance=LpDistance(p=p, normalize_embeddings=False),
    )


def build_objective(
    variant: str,
    semantic_distance: SemanticDistance | None = None,
    *,
    embedding_size: int,
    num_classes: int | None = None,
    lambda_kl: float = 0.001,
    lambda_cls: float = 0.01,
    gamma: float = 0.1,
    rho: float = 2.0,
    sim_error: str = "squared",
    balance_levels: bool = False,
    detach_tau_z: bool = False,
    semantic_power: float = 1.0,
    alpha: float = 0.1,
    beta: float = 0.1,
    kl_p: int = 2,
    kl_samples: int | None = None,
    memory_size: int = 0,
    label_table: Any = None,
) -> torch.nn.Module:
    """The loss module of ``variant``, called as ``loss(codes, labels)``.

    The paper's variants are :class:`SemanticDistanceLoss` (``sim``, ``shrewd``) or
    :class:`SHREDLoss` (with its own classifier on the code: ``cls``, ``kl_cls``, ``shred``);
    L_sim trains on ``semantic_distance ** semantic_power`` (:class:`PowerDistance`). The
    baselines are :func:`pml_baseline_loss`. ``memory_size > 0`` wraps the loss in a
    cross-batch memory of that many past codes (PML's ``CrossBatchMemory``; a baseline's
    miner moves into the memory).

    Example::

        loss_fn = build_objective("shrewd", HierarchyDistance.cifar100(), embedding_size=64)
        loss = loss_fn(codes, labels)
    """
    spec = get_variant(variant)
    if spec.pml is not None:
        loss_fn = pml_baseline_loss(spec.pml)
    else:
        from ..semantic_distances import PowerDistance
        from .semantic_distance_loss import SemanticDistanceLoss
        from .shred_loss import SHREDLoss

        if spec.sim and semantic_distance is None:
            raise ValueError(f"variant {variant!r} needs a semantic_distance provider")
        provider = semantic_distance if spec.sim else None
        if provider is not None and semantic_power != 1.0:
            provider = PowerDistance(provider, semantic_power)
        shared: dict[str, Any] = dict(
            gamma=gamma,
            rho=rho,
            error=sim_error,
            balance_levels=balance_levels,
            detach_tau_z=detach_tau_z,
            embedding_regularizer=kl_regularizer(alpha, beta, kl_p, kl_samples) if spec.kl else None,
            embedding_reg_weight=lambda_kl,
        )
        if spec.cls:
            if not num_classes:
                raise ValueError(f"variant {variant!r} needs num_classes (its classifier on the code)")
            loss_fn = SHREDLoss(
                provider,
                num_classes=num_classes,
                embedding_size=embedding_size,
                lambda_sim=1.0 if spec.sim else 0.0,
                lambda_kl=lambda_kl if spec.kl else 0.0,
                lambda_cls=lambda_cls,
                alpha=alpha,
                beta=beta,
                **shared,
            )
        else:
            loss_fn = SemanticDistanceLoss(provider, **shared)
    if memory_size:
        loss_fn = with_memory(loss_fn, embedding_size, memory_size)
    if label_table is not None:
        from .relabeled_loss import RelabeledLoss

        if spec.sim:
            raise ValueError(
                f"variant {variant!r} trains on semantic distances between the data's own labels; "
                "label_table is for label-based losses (PML baselines, L_cls)"
            )
        loss_fn = RelabeledLoss(loss_fn, label_table)  # outermost: a memory keeps the loss's labels
    return loss_fn


def with_memory(loss_fn: torch.nn.Module, embedding_size: int, memory_size: int) -> torch.nn.Module:
    """``loss_fn`` inside a cross-batch memory of ``memory_size`` codes; a ``MultipleLosses``
    of one loss and its miner is unpacked, since the memory runs the miner itself."""
    from pytorch_metric_learning.losses import MultipleLosses

    from .cross_batch_memory import CrossBatchMemory

    miner = None
    if isinstance(loss_fn, MultipleLosses):
        (loss_fn,), miner = loss_fn.losses, (loss_fn.miners[0] if loss_fn.miners else None)
    return CrossBatchMemory(loss_fn, embedding_size, memory_size=memory_size, miner=miner)


def inner_loss(loss_fn: torch.nn.Module) -> torch.nn.Module:
    """The loss itself, inside a cross-batch memory or not."""
    return getattr(loss_fn, "loss", loss_fn)
