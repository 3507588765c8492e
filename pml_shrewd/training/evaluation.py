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
        holdout_labels: class ids held out of training (the unseen-class protocol,
            ``TrainConfig.holdout_classes``): the figures of the queries of those classes and of
            the others come as ``"<key> [unseen]"`` and ``"<key> [seen]"`` (``"mAHP@k [unseen]"``,
            ``"mAP [seen]"``, ...; ``"queries [unseen]"`` counts them) beside the all-queries keys.
        label_groups: ``label_groups[c]``, the group id of class ``c`` (e.g. CIFAR-100's
            superclass): adds ``"same_group@k"``, the mean share of a query's top ``k`` (Hamming
            ranking of the binary codes) that is of its group (with ``holdout_labels`` also per
            part: where an unseen class's images land).

    Queries whose label no database item has count 0 in mAP and P@k; a warning says how many.
    :meth:`score` scores codes or real vectors computed elsewhere (ITQ codes, backbone features)
    the same way.

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
        holdout_labels: Any = None,
        label_groups: Any = None,
    ) -> None:
        self.semantic_distance, self.k = semantic_distance, k
        self.max_db_samples, self.seed = max_db_samples, seed
        self.extra_semantic_distances = dict(extra_semantic_distances or {})
        self.return_curves, self.keep_codes = return_curves, keep_codes
        self.label_metrics = label_metrics
        if holdout_labels is not None and not label_metrics:
            raise ValueError("holdout_labels need class labels (label_metrics=True)")
        self.holdout_labels = None if holdout_labels is None else sorted({int(c) for c in holdout_labels})
        self.label_groups = None if label_groups is None else np.asarray(label_groups, dtype=np.int64)
        self.codes: dict[str, np.ndarray] = {}

    def __call__(self, trainer) -> dict[str, Any]:
        encoded = encode_queries_and_database(self, trainer)
        if encoded is None:
            return {}
        q_codes, q_labels, db_codes, db_labels = encoded
        out = self.score(q_codes, db_codes, q_labels, db_labels)
        if not self.label_metrics:
            drop_label_metrics(out)
        else:
            warn_unmatched_queries(q_labels.numpy(), db_labels.numpy())
        return out

    #: Keys of :func:`~pml_shrewd.retrieval.evaluate_codes` about the database (the same for any queries).
    DATABASE_KEYS = ("k", "bit_balance", "quantization_error")

    def score(self, query_codes: Any, db_codes: Any, query_labels: Any, db_labels: Any) -> dict[str, Any]:
        """The figures of codes in ``[0, 1]`` computed elsewhere (e.g. ITQ codes), with the
        evaluator's settings: :func:`~pml_shrewd.retrieval.evaluate_codes` (Hamming of the
        binarised codes, and L1), and the unseen / seen and group keys.

        With ``holdout_labels`` the unseen and the seen queries are ranked apart, and the
        all-queries figures are their query-weighted means (every one is a mean over queries, and
        a query's ranking does not depend on the other queries: the same figures, one pass).
        """
        return self._figures(query_codes, db_codes, query_labels, db_labels, embeddings=False)

    def score_embeddings(
        self, query_x: Any, db_x: Any, query_labels: Any, db_labels: Any, distance: str = "cosine"
    ) -> dict[str, Any]:
        """:meth:`score` for real vectors ranked by ``distance``, no hashing (e.g. backbone
        features): :func:`~pml_shrewd.retrieval.evaluate_embeddings`' keys."""
        return self._figures(query_x, db_x, query_labels, db_labels, embeddings=True, distance=distance)

    def _figures(
        self,
        query: Any,
        db: Any,
        query_labels: Any,
        db_labels: Any,
        *,
        embeddings: bool,
        distance: str = "cosine",
    ) -> dict[str, Any]:
        from ..retrieval import evaluate_codes, evaluate_embeddings
        from ..retrieval.codes import to_numpy
        from ..retrieval.protocols import topk_same_group_share

        def evaluate(q, q_labels):
            kwargs = dict(
                semantic_distance=self.semantic_distance,
                k=min(self.k, len(db)),
                return_curves=self.return_curves,
                extra_semantic_distances=self.extra_semantic_distances or None,
            )
            if embeddings:
                return evaluate_embeddings(q, db, q_labels, db_labels, distance=distance, **kwargs)
            return evaluate_codes(q, db, q_labels, db_labels, **kwargs)

        ql = to_numpy(query_labels, "query_labels")
        parts: dict[str, np.ndarray] = {}
        if self.holdout_labels is None:
            metrics = evaluate(query, query_labels)
        else:
            q = to_numpy(query, "query codes")
            unseen = np.isin(ql, self.holdout_labels)
            parts = {"unseen": unseen, "seen": ~unseen}
            figures = {name: evaluate(q[mask], ql[mask]) for name, mask in parts.items() if mask.any()}
            counts = {name: int(mask.sum()) for name, mask in parts.items()}
            metrics = {}
            for key, value in next(iter(figures.values())).items():  # all queries
                if key in self.DATABASE_KEYS or not isinstance(value, (float, list)):
                    metrics[key] = value
                else:
                    pooled = sum(np.asarray(f[key], dtype=np.float64) * counts[n] for n, f in figures.items())
                    metrics[key] = (pooled / len(ql)).tolist()
            for name, part in figures.items():
                metrics.update(
                    {
                        f"{key} [{name}]": value
                        for key, value in part.items()
                        if key not in self.DATABASE_KEYS and not key.startswith("hp_curve")
                    }
                )
            metrics.update({f"queries [{name}]": n for name, n in counts.items()})
        if self.label_groups is not None:
            share = topk_same_group_share(
                query,
                db,
                ql,
                db_labels,
                label_groups=self.label_groups,
                k=min(self.k, len(db)),
                distance=distance if embeddings else "hamming",
            )
            metrics["same_group@k"] = float(share.mean())
            for name, mask in parts.items():
                if mask.any():
                    metrics[f"same_group@k [{name}]"] = float(share[mask].mean())
        return _floats(metrics)


def encode_queries_and_database(evaluator, trainer):
    """``(query codes, query labels, database codes, database labels)`` of the trainer's test set
    and of ``evaluator``'s database subset (``max_db_samples``, ``seed``), kept in
    ``evaluator.codes`` when ``keep_codes``; ``None`` on processes other than the main one."""
    from ..data import database_subset

    database = database_subset(trainer.database_set, evaluator.max_db_samples, evaluator.seed)
    q_codes, q_labels = trainer.encode(trainer.test_set)
    db_codes, db_labels = trainer.encode(database)
    if not trainer.accelerator.is_main_process:
        return None
    if evaluator.keep_codes:
        evaluator.codes = dict(
            query_codes=q_codes.numpy(),
            query_labels=q_labels.numpy(),
            db_codes=db_codes.numpy(),
            db_labels=db_labels.numpy(),
        )
    return q_codes, q_labels, db_codes, db_labels


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


class CaptionRetrievalEvaluator:
    """Test images query the database images; relevance comes from held-out captions
    (:func:`~pml_shrewd.retrieval.evaluate_caption_codes`: graded mAHP@k and nDCG@k, binarised and
    continuous, for every relevance), so a good score cannot just mean the codes copied the
    sentence model that made the training targets.

    Args:
        relevances: ``{name: provider}`` over image ids (e.g. ``{"sentence": ..., "words": ...}``
            from :func:`~pml_shrewd.retrieval.caption_relevance` of the held-out caption sets).
        k, max_db_samples, seed, return_curves, keep_codes: as :class:`RetrievalEvaluator`.

    :meth:`score` and :meth:`score_embeddings` score codes or real vectors computed elsewhere
    (ITQ codes, backbone features) the same way.

    Example::

        data = CaptionedImages("captions.csv", train_captions=(0, 1, 2), held_out_captions=(3, 4))
        relevance = {r: caption_relevance(data.held_out_sets, r) for r in CAPTION_RELEVANCES}
        trainer = Trainer(model, loss_fn, train, test, evaluator=CaptionRetrievalEvaluator(relevance, k=100))
    """

    def __init__(
        self,
        relevances: dict[str, Any],
        *,
        k: int = 100,
        max_db_samples: int | None = None,
        seed: int = 0,
        return_curves: bool = False,
        keep_codes: bool = False,
    ) -> None:
        if not relevances:
            raise ValueError("CaptionRetrievalEvaluator needs at least one relevance provider")
        self.relevances, self.k = dict(relevances), k
        self.max_db_samples, self.seed = max_db_samples, seed
        self.return_curves, self.keep_codes = return_curves, keep_codes
        self.codes: dict[str, np.ndarray] = {}

    def __call__(self, trainer) -> dict[str, Any]:
        encoded = encode_queries_and_database(self, trainer)
        if encoded is None:
            return {}
        q_codes, q_ids, db_codes, db_ids = encoded
        return self.score(q_codes, db_codes, q_ids, db_ids)

    def score(self, query_codes: Any, db_codes: Any, query_ids: Any, db_ids: Any) -> dict[str, Any]:
        """The figures of codes in ``[0, 1]`` (Hamming of the binarised codes, and L1)."""
        from ..retrieval import evaluate_caption_codes

        return _floats(
            evaluate_caption_codes(
                query_codes,
                db_codes,
                query_ids,
                db_ids,
                relevance=self.relevances,
                k=self.k,
                return_curves=self.return_curves,
            )
        )

    def score_embeddings(
        self, query_x: Any, db_x: Any, query_ids: Any, db_ids: Any, distance: str = "cosine"
    ) -> dict[str, Any]:
        """The binary-ranking keys for real vectors ranked by ``distance`` (no hashing)."""
        from ..retrieval import evaluate_caption_embeddings

        return _floats(
            evaluate_caption_embeddings(
                query_x,
                db_x,
                query_ids,
                db_ids,
                relevance=self.relevances,
                k=self.k,
                distance=distance,
                return_curves=self.return_curves,
            )
        )


def _floats(metrics: dict[str, Any]) -> dict[str, Any]:
    return {
        key: (float(v) if np.isscalar(v) and not isinstance(v, (int, np.integer, str)) else v)
        for key, v in metrics.items()
    }
