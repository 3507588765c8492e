"""PML ``AccuracyCalculator`` with hashing metrics: Hamming-ranked mAP and mAHP@k.

pytorch-metric-learning picks metrics up from ``calculate_<name>`` methods; this
subclass adds three, so ``get_accuracy`` returns PML's usual metrics plus:

- ``"hamming_mAP"``: mAP over the whole Hamming ranking of the binarised codes
  (``code > threshold``), as reported by Arponen & Bishop (arXiv 2005.04917);
- ``"hamming_mAHP"``: mAHP@``hp_k`` over the same Hamming ranking (Barz & Denzler);
- ``"mAHP"``: mAHP@``hp_k`` over the continuous codes (``continuous_distance``, L1 by
  default), to compare with the binary one.

The mAHP metrics need a ``semantic_distance`` (provider or class-by-class matrix);
without one they are left out. Ties are broken by reference index, and queries whose
class is absent from the reference set count as 0 (see :mod:`pml_shrewd.retrieval.metrics`).
``ref_includes_query`` (PML's convention, also set when ``reference`` is omitted):
the first ``len(query)`` reference items are the queries; each query's own item is
removed from its ranking.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from .codes import binarize, to_numpy
from .metrics import _ahp, _rank_queries

__all__ = ["HashingAccuracyCalculator"]

_SEMANTIC_METRICS = ("hamming_mAHP", "mAHP")


class HashingAccuracyCalculator(AccuracyCalculator):
    """PML's ``AccuracyCalculator`` plus ``hamming_mAP``, ``hamming_mAHP`` and ``mAHP`` (Arponen & Bishop, 2020).

    Args:
        semantic_distance: provider (``provider(ids_a, ids_b)``; labels are its ids) or a
            class-by-class distance matrix; ``None`` drops the mAHP metrics.
        hp_k: the k of mAHP@k (250 in the paper).
        threshold: binarisation cut for the Hamming metrics (0.5 for sigmoid codes).
        signed: codes lie in ``[-1, 1]``; binarise at 0 instead (``threshold`` ignored).
        continuous_distance: ``"l1"`` or ``"l2"`` ranking for the continuous ``mAHP``.
        **kwargs: passed to PML's ``AccuracyCalculator`` (``include``, ``exclude``, ``k``, ...).

    Example::

        calc = HashingAccuracyCalculator(semantic_distance=provider, hp_k=250, k="max_bin_count")
        acc = calc.get_accuracy(test_codes, test_labels, train_codes, train_labels)
        print(acc["precision_at_1"], acc["hamming_mAP"], acc["hamming_mAHP"])
    """

    def __init__(
        self,
        semantic_distance: Any = None,
        hp_k: int = 250,
        threshold: float = 0.5,
        *,
        signed: bool = False,
        continuous_distance: str = "l1",
        include: tuple | list = (),
        exclude: tuple | list = (),
        **kwargs: Any,
    ):
        if isinstance(hp_k, bool) or not isinstance(hp_k, int) or hp_k <= 0:
            raise ValueError(f"hp_k must be a positive integer, got {hp_k!r}")
        if continuous_distance not in ("l1", "l2"):
            raise ValueError(f"continuous_distance must be 'l1' or 'l2', got {continuous_distance!r}")
        self.semantic_distance = semantic_distance
        self.hp_k = hp_k
        self.threshold = threshold
        self.signed = signed
        self.continuous_distance = continuous_distance
        self._cache: dict[str, Any] = {}
        if semantic_distance is None:
            wanted = [m for m in include if m in _SEMANTIC_METRICS]
            if wanted:
                raise ValueError(f"{wanted} need a semantic_distance (a provider or a class-by-class matrix)")
            if not include:  # PML checks that every excluded name exists: keep them valid
                exclude = tuple(exclude) + tuple(m for m in _SEMANTIC_METRICS if m not in exclude)
        super().__init__(include=tuple(include), exclude=tuple(exclude), **kwargs)

    def get_accuracy(
        self,
        query,
        query_labels,
        reference=None,
        reference_labels=None,
        ref_includes_query=False,
        include=(),
        exclude=(),
    ):
        """PML's ``get_accuracy``; our metrics share one Hamming ranking per call."""
        self._cache = {}
        try:
            return super().get_accuracy(
                query, query_labels, reference, reference_labels, ref_includes_query, include, exclude
            )
        finally:
            self._cache = {}

    # ------------------------------------------------------------------ helpers

    def _codes(self, x: Any) -> np.ndarray:
        return to_numpy(x, "embeddings").astype(np.float32)

    def _binary(self, x: Any) -> np.ndarray:
        return binarize(self._codes(x), None if self.signed else self.threshold, signed=self.signed)

    def _hamming(self, query, reference, query_labels, reference_labels, ref_includes_query) -> dict:
        if "hamming" not in self._cache:
            needs_hp = self.semantic_distance is not None and "hamming_mAHP" in self.get_curr_metrics()
            self._cache["hamming"] = _rank_queries(
                self._binary(query),
                self._binary(reference),
                to_numpy(query_labels),
                to_numpy(reference_labels),
                distance="hamming",
                full_ap="hamming_mAP" in self.get_curr_metrics(),
                hp_k=self.hp_k if needs_hp else None,
                semantic_distance=self.semantic_distance if needs_hp else None,
                ref_includes_query=ref_includes_query,
            )
        return self._cache["hamming"]

    # ------------------------------------------------------------------ metrics (picked up by name)

    def calculate_hamming_mAP(
        self, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ) -> float:
        res = self._hamming(query, reference, query_labels, reference_labels, ref_includes_query)
        return float(res["ap"].mean())

    def calculate_hamming_mAHP(
        self, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ) -> float:
        res = self._hamming(query, reference, query_labels, reference_labels, ref_includes_query)
        return float(_ahp(res["hp"]).mean())

    def calculate_mAHP(
        self, query, reference, query_labels, reference_labels, ref_includes_query, **kwargs
    ) -> float:
        res = _rank_queries(
            self._codes(query),
            self._codes(reference),
            to_numpy(query_labels),
            to_numpy(reference_labels),
            distance=self.continuous_distance,
            hp_k=self.hp_k,
            semantic_distance=self.semantic_distance,
            ref_includes_query=ref_includes_query,
        )
        return float(_ahp(res["hp"]).mean())
