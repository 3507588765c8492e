"""A label-based loss on other labels than the data set's: e.g. PML losses on pseudo-classes."""

from __future__ import annotations

from typing import Any

import torch


class RelabeledLoss(torch.nn.Module):
    """``loss(codes, table[labels])``: trains a label-based loss (a PML loss, with its miner) on a
    relabelling of the data set's labels, e.g. k-means clusters of caption embeddings for
    captioned images, whose own labels are image ids that no two images share.

    The data keep their labels (the evaluation needs the image ids); only the loss sees
    ``table[label]``. ``table`` is a buffer: saved and restored with the run.

    Args:
        loss: the loss (anything called as ``loss(embeddings, labels, indices_tuple, ref_emb, ref_labels)``).
        table: ``table[i]`` the label the loss sees for data label ``i`` (1-D, integers).

    Example::

        clusters = provider.cluster_labels(100)            # one pseudo-class per image id
        loss_fn = RelabeledLoss(pml_baseline_loss("triplet"), clusters)
        loss = loss_fn(codes, image_ids)
    """

    def __init__(self, loss: torch.nn.Module, table: Any) -> None:
        super().__init__()
        table = torch.as_tensor(table)
        if table.dim() != 1 or table.numel() == 0 or table.is_floating_point() or table.is_complex():
            raise ValueError(
                f"RelabeledLoss: table must be a non-empty 1-D integer tensor, got {tuple(table.shape)}"
            )
        self.loss = loss
        self.register_buffer("table", table.long())

    def relabel(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels, device=self.table.device)
        if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.table)):
            raise IndexError(
                f"RelabeledLoss: labels must lie in [0, {len(self.table)}) (the table's rows), "
                f"got [{int(labels.min())}, {int(labels.max())}]"
            )
        return self.table[labels.long()]

    def forward(
        self,
        embeddings: torch.Tensor,
        labels: torch.Tensor,
        indices_tuple: Any = None,
        ref_emb: torch.Tensor | None = None,
        ref_labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        labels = self.relabel(labels).to(labels.device)
        if ref_emb is None and ref_labels is None:
            # PML's MultipleLosses (a loss with its miner) takes no reference arguments.
            return self.loss(embeddings, labels, indices_tuple)
        ref_labels = None if ref_labels is None else self.relabel(ref_labels).to(ref_labels.device)
        return self.loss(embeddings, labels, indices_tuple, ref_emb=ref_emb, ref_labels=ref_labels)
