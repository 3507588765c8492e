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
        label_metrics: report mAP and P@k. ``False`` for captioned data, where every image is its
            own label and no database item shares a query's: those figures would always be 0;
            ``"absent"`` then says why they are missing.

    Queries whose label no database item has count 0 in mAP and P@k; a warning says how many.

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
        label_metrics: bool = True,
    ) -> None:
        self.semantic_distance, self.k = semantic_distance, k
        self.max_db_samples, self.seed = max_db_samples, seed
        self.extra_semantic_distances = dict(extra_semantic_distances or {})
        self.return_curves, self.keep_codes = return_curves, keep_codes
        self.label_metrics = label_metrics
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
        out = {
            key: (float(v) if np.isscalar(v) and not isinstance(v, (int, np.integer)) else v)
            for key, v in metrics.items()
        }
        if not self.label_metrics:
            drop_label_metrics(out)
        else:
            warn_unmatched_queries(q_labels.numpy(), db_labels.numpy())
        return out


def drop_label_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """Remove mAP and P@k (in place) and say why in ``"absent"``: for captioned data every image is
    its own label, so no database item is ever "relevant" and both would always be 0."""
    for key in [key for key in metrics if key.split("_")[0] in ("mAP", "mAP@k", "P@k")]:
        del metrics[key]
    metrics["absent"] = "mAP, P@k: captioned data (every image is its own label); see mAHP@k"
    return metrics


def warn_unmatched_queries(query_labels: np.ndarray, db_labels: np.ndarray) -> int:
    """Warn when some queries' labels occur nowhere in the database (their AP and P@k are 0,
    e.g. a folder split by images whose test classes never reached train); returns how many."""
    import warnings

    missing = ~np.isin(query_labels, db_labels)
    if missing.any():
        classes = np.unique(query_labels[missing])
        warnings.warn(
            f"{int(missing.sum())} of {len(query_labels)} queries have labels that no database item has "
            f"({len(classes)} classes, e.g. {classes[:5].tolist()}): their AP and P@k are 0 and pull mAP down",
            stacklevel=3,
        )
    return int(missing.sum())
