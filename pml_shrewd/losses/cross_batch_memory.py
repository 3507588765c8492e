"""PML's ``CrossBatchMemory`` opened to this package's losses."""

from __future__ import annotations

import numpy as np
import torch
from pytorch_metric_learning import losses as pml_losses

from .semantic_distance_loss import SemanticDistanceLoss, as_id_tensor, check_count


class CrossBatchMemory(pml_losses.CrossBatchMemory):
    """PML's ``CrossBatchMemory`` (Wang et al., "Cross-Batch Memory for Embedding Learning",
    2020) that also accepts :class:`SemanticDistanceLoss`, :class:`SHREDLoss` and their
    subclasses, next to every loss PML's own allow-list names.

    PML's wrapper refuses any loss not on its list (``CrossBatchMemory not supported for
    SemanticDistanceLoss``). The mechanism is PML's, unchanged: a queue of the last
    ``memory_size`` detached codes and their labels; every call enqueues the batch, then calls
    ``loss(embeddings, labels, indices_tuple, ref_emb=memory, ref_labels=memory_labels)``
    with the pairs ``(batch row, memory slot)``: all of them, or those of ``miner`` (run on
    batch vs memory), less each row's own slot. With ``enqueue_mask`` the masked rows only
    fill the memory and the others are the queries (no self-slot to remove).

    For L_sim this means: the pairs are every ``(query, memory slot)`` pair (a set of distinct
    pairs, see :class:`SemanticDistanceLoss`), ``tau_z`` and ``tau_y`` are their means, the
    memory's codes are constants (only the current batch gets gradient), and the
    ``embedding_regularizer`` (the KL term) and ``SHREDLoss``'s classifier see the current
    batch (the queries) only.

    On top of PML it refuses bad arguments with named errors: ``embedding_size`` and
    ``memory_size`` must be positive integers, codes must be ``(batch, embedding_size)``
    with at most ``memory_size`` rows, ``enqueue_mask`` a boolean mask of the batch's
    length; labels may also be lists or numpy arrays of integer ids.

    Example::

        loss_fn = CrossBatchMemory(SemanticDistanceLoss(provider), embedding_size=64, memory_size=1024)
        loss = loss_fn(codes, class_ids)
    """

    def __init__(self, loss, embedding_size: int, memory_size: int = 1024, miner=None, **kwargs):
        embedding_size = check_count("embedding_size", embedding_size)
        memory_size = check_count("memory_size", memory_size)
        super().__init__(loss, embedding_size, memory_size=memory_size, miner=miner, **kwargs)

    @staticmethod
    def supported_losses() -> list[str]:
        """PML's list, plus :class:`SemanticDistanceLoss` and every subclass of it (by name)."""
        return [*pml_losses.CrossBatchMemory.supported_losses(), *_class_names(SemanticDistanceLoss)]

    def forward(self, embeddings, labels, indices_tuple=None, enqueue_mask=None):
        if not isinstance(embeddings, torch.Tensor) or embeddings.dim() != 2:
            shape = (
                tuple(embeddings.shape) if isinstance(embeddings, torch.Tensor) else type(embeddings).__name__
            )
            raise ValueError(
                f"CrossBatchMemory: embeddings must be a (batch, embedding_size) tensor, got {shape}"
            )
        if embeddings.shape[1] != self.embedding_size:
            raise ValueError(
                f"CrossBatchMemory was built for embedding_size={self.embedding_size}, got codes of "
                f"shape {tuple(embeddings.shape)}"
            )
        labels = as_id_tensor(labels, "labels")
        if labels is None:
            raise ValueError("CrossBatchMemory needs labels (they are stored in the memory)")
        if labels.dim() != 1 or len(labels) != len(embeddings):
            raise ValueError(
                f"CrossBatchMemory: labels must be 1-D with one entry per embedding, got shape "
                f"{tuple(labels.shape)} for {len(embeddings)} embeddings"
            )
        if enqueue_mask is not None:
            if isinstance(enqueue_mask, (list, tuple, np.ndarray)):
                enqueue_mask = torch.as_tensor(np.asarray(enqueue_mask))
            if not isinstance(enqueue_mask, torch.Tensor) or enqueue_mask.dtype != torch.bool:
                raise TypeError(
                    "enqueue_mask must be a boolean mask (True: enqueue only), got "
                    f"{getattr(enqueue_mask, 'dtype', type(enqueue_mask).__name__)}"
                )
            if enqueue_mask.shape != (len(embeddings),):
                raise ValueError(
                    f"enqueue_mask must have shape ({len(embeddings)},), got {tuple(enqueue_mask.shape)}"
                )
            enqueue_mask = enqueue_mask.to(embeddings.device)
            queued = int(enqueue_mask.sum())
        else:
            queued = len(embeddings)
        if queued > self.memory_size:
            raise ValueError(
                f"CrossBatchMemory: {queued} codes to enqueue exceed memory_size={self.memory_size}"
            )
        return super().forward(embeddings, labels, indices_tuple=indices_tuple, enqueue_mask=enqueue_mask)


def _class_names(cls: type) -> list[str]:
    """Names of ``cls`` and of all its subclasses defined so far."""
    names, todo = [], [cls]
    while todo:
        c = todo.pop()
        names.append(c.__name__)
        todo.extend(c.__subclasses__())
    return names
