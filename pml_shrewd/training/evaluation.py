"""Evaluators: what a :class:`~pml_shrewd.training.Trainer` measures at the end of a run."""

from __future__ import annotations

from typing import Any

import numpy as np


class RetrievalEvaluator:
    """Test queries against the database set (the training data) by Hamming ranking:
    :func:`~pml_shrewd.retrieval.evaluate_codes` of the binarised codes and of the
    continuous ones.

    Args:
        semantic_distance: the provider whose distances score HP@k / mAHP@k.
        k: the HP@k / mAHP@k depth (capped at the database size; the metrics say which ``k``).
        max_db_samples: score against a seeded random subset of the database
            (:func:`~pml_shrewd.data.database_subset`, the rule ``pml-shrewd evaluate --max-db`` uses).
        extra_semantic_distances: more providers scoring the same rankings (``"mAHP@k [name]"``).
        return_curves: add the HP@1..k curves.
        keep_codes: keep the codes and labels of the last call in ``self.codes``.

    Example::

        trainer = Trainer(model, loss_fn, train, test, evaluator=RetrievalEvaluator(tree, k=250))
    """

    def __init__(
        self,
        semantic_distance=None,
        *,
        k: int = 250,
        max_db_samples: int | None = None,
        seed: int = 0,
        extra_semantic_distances: dict[str, Any] | None = None,
        return_curves: bool = False,
        keep_codes: bool = False,
    ) -> None:
        self.semantic_distance, self.k = semantic_distance, k
        self.max_db_samples, self.seed = max_db_samples, seed
        self.extra_semantic_distances = dict(extra_semantic_distances or {})
        self.return_curves, self.keep_codes = return_curves, keep_codes
        self.codes: dict[str, np.ndarray] = {}

    def __call__(self, trainer) -> dict[str, Any]:
        from ..data import database_subset
        from ..retrieval import evaluate_codes

        database = database_subset(trainer.database_set, self.max_db_samples, self.seed)
        q_codes, q_labels = trainer.encode(trainer.test_set)
        db_codes, db_labels = trainer.encode(database)
        if not trainer.accelerator.is_main_process:
            return {}
        if self.keep_codes:
            self.codes = dict(
                query_codes=q_codes.numpy(),
                query_labels=q_labels.numpy(),
                db_codes=db_codes.numpy(),
                db_labels=db_labels.numpy(),
            )
        metrics = evaluate_codes(
            q_codes,
            db_codes,
            q_labels,
            db_labels,
            semantic_distance=self.semantic_distance,
            k=min(self.k, len(db_codes)),
            return_curves=self.return_curves,
            extra_semantic_distances=self.extra_semantic_distances or None,
        )
        return {
            key: (float(v) if np.isscalar(v) and not isinstance(v, (int, np.integer)) else v)
            for key, v in metrics.items()
        }
