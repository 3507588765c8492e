"""PML's own metric-learning losses on class labels: the baselines a user would pick instead."""

from __future__ import annotations

from pytorch_metric_learning import losses, miners

PML_BASELINES = ("contrastive", "triplet", "multisimilarity")


def pml_baseline_loss(name: str) -> losses.BaseMetricLossFunction | losses.MultipleLosses:
    """A PML loss (with its miner, through PML's ``MultipleLosses``) called as ``loss(codes, labels)``.

    - ``"contrastive"``: ``ContrastiveLoss()`` (PML's defaults);
    - ``"triplet"``: ``TripletMarginLoss(margin=0.1)`` on ``TripletMarginMiner(margin=0.1)``
      triplets;
    - ``"multisimilarity"``: ``MultiSimilarityLoss()`` on ``MultiSimilarityMiner()`` pairs.

    These are the settings of the CPU benchmark's PML rows (BENCHMARKS.md), so a GPU run
    of the training CLI compares with the same losses.

    Example::

        loss_fn = pml_baseline_loss("triplet")
        loss = loss_fn(codes, labels)
    """
    if name == "contrastive":
        return losses.ContrastiveLoss()
    if name == "triplet":
        return losses.MultipleLosses(
            [losses.TripletMarginLoss(margin=0.1)], miners=[miners.TripletMarginMiner(margin=0.1)]
        )
    if name == "multisimilarity":
        return losses.MultipleLosses([losses.MultiSimilarityLoss()], miners=[miners.MultiSimilarityMiner()])
    raise ValueError(f"pml_baseline_loss: name must be one of {PML_BASELINES}, got {name!r}")
