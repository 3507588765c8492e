"""PML ``AccuracyCalculator`` with hashing metrics: Hamming-ranked mAP and mAHP@k.

pytorch-metric-learning picks metrics up from ``calculate_<name>`` methods; this
subclass adds three, so ``get_accuracy`` returns PML's usual metrics plus:

- ``"hamming_mAP"``: mAP over the whole Hamming ranking of the binarised codes
  (``code > threshold``), as reported by Arponen & Bishop (arXiv 2005.04917);
- ``"hamming_mAHP"``: mAHP@``hp_k`` over the same Hamming ranking (Barz & Denzler);
- ``"mAHP"``: mAHP@``hp_k`` over the continuous codes (``continuous_distance``, L1 by
  default), to compare with the binary one.

**Every ranking metric is Hamming**: the calculator's default ``knn_func`` is
:class:`HammingKNN`, so PML's own k-NN metrics (``precision_at_1``,
``mean_average_precision_at_r``, ``r_precision``, ...) also rank the references by Hamming
distance of the binarised codes, ties by reference index, not by L2 of the continuous codes
(pass ``knn_func=`` to choose another). Only ``"mAHP"`` (continuous, by design) and PML's
clustering metrics (NMI / AMI, k-means on the codes) see the continuous codes.

**Codes**: ``[0, 1]`` codes (sigmoid outputs; ``[-1, 1]`` with ``signed=True``), on both the
query and the reference side. Raw logits and L2-normalised codes are refused with a
``ValueError``: L2 normalisation pushes every sigmoid code below 0.5, so all bits would be 0
and the Hamming metrics fall to chance. PML's testers normalise by default, so build them
with ``normalize_embeddings=False``::

    tester = testers.GlobalEmbeddingSpaceTester(
        normalize_embeddings=False,
        accuracy_calculator=HashingAccuracyCalculator(semantic_distance=provider),
    )

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
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from .codes import _packbits, binarize, check_code_range, to_numpy
from .metrics import _ahp, _hamming_knn, _rank_queries

__all__ = ["HashingAccuracyCalculator", "HammingKNN"]

_SEMANTIC_METRICS = ("hamming_mAHP", "mAHP")
_TESTER_HINT = (
    " (pytorch-metric-learning's testers L2-normalise embeddings by default: build the tester with "
    "normalize_embeddings=False, e.g. testers.GlobalEmbeddingSpaceTester(normalize_embeddings=False, "
    "accuracy_calculator=HashingAccuracyCalculator(...)))"
)


class HammingKNN:
    """A PML ``knn_func``: exact k nearest references by Hamming distance of binarised codes.

    Binarises query and reference codes (``code > threshold``, or ``code > 0`` with
    ``signed=True``) and ranks by Hamming distance, ties by reference index (the rule of
    :mod:`pml_shrewd.retrieval.metrics`). Called as PML's ``AccuracyCalculator`` calls its
    ``knn_func``: ``knn(query, k, reference, ref_includes_query) -> (distances, indices)``, torch
    tensors on the query's device; with ``ref_includes_query`` query ``i`` is reference ``i``
    and is left out of its own neighbours. Codes outside ``[0, 1]`` (``[-1, 1]`` if ``signed``)
    or L2-normalised codes are refused (see :func:`pml_shrewd.retrieval.codes.check_code_range`).

    Example::

        calc = AccuracyCalculator(knn_func=HammingKNN(), include=("precision_at_1",))
        acc = calc.get_accuracy(test_codes, test_labels, train_codes, train_labels)
    """

    def __init__(self, threshold: float = 0.5, *, signed: bool = False):
        self.threshold = threshold
        self.signed = signed

    def _packed(self, x: Any, name: str) -> np.ndarray:
        arr = to_numpy(x, name)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be a 2-D (num_items, num_bits) array, got shape {arr.shape}")
        check_code_range(arr, name, signed=self.signed, hint=_TESTER_HINT)
        return _packbits(binarize(arr, None if self.signed else self.threshold, signed=self.signed))

    def __call__(self, query, k, reference=None, ref_includes_query=False):
        if reference is None:
            reference, ref_includes_query = query, True
        q, db = self._packed(query, "query"), self._packed(reference, "reference")
        if q.shape[1] != db.shape[1]:
            raise ValueError(
                f"query codes have {q.shape[1]} bytes per code but reference codes {db.shape[1]}"
            )
        available = len(db) - int(bool(ref_includes_query))
        k = int(min(k, available))
        if k <= 0:
            raise ValueError("the reference set leaves no neighbours to rank")
        dist, idx = _hamming_knn(q, db, k, exclude_self=bool(ref_includes_query))
        device = query.device if isinstance(query, torch.Tensor) else torch.device("cpu")
        return torch.from_numpy(dist.astype(np.float32)).to(device), torch.from_numpy(idx).to(device)


class HashingAccuracyCalculator(AccuracyCalculator):
    """PML's ``AccuracyCalculator`` plus ``hamming_mAP``, ``hamming_mAHP`` and ``mAHP`` (Arponen & Bishop, 2020).

    Args:
        semantic_distance: provider (``provider(ids_a, ids_b)``; labels are its ids) or a
            class-by-class distance matrix; ``None`` drops the mAHP metrics.
        hp_k: the k of mAHP@k (250 in the paper).
        threshold: binarisation cut for the Hamming metrics (0.5 for sigmoid codes).
        signed: codes lie in ``[-1, 1]``; binarise at 0 instead (``threshold`` ignored).
        continuous_distance: ``"l1"`` or ``"l2"`` ranking for the continuous ``mAHP``.
        **kwargs: passed to PML's ``AccuracyCalculator`` (``include``, ``exclude``, ``k``, ...);
            ``knn_func`` defaults to :class:`HammingKNN` with the same ``threshold`` / ``signed``.

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
        kwargs.setdefault("knn_func", HammingKNN(threshold, signed=signed))
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
        """PML's ``get_accuracy``; our metrics share one Hamming ranking per call.

        Refuses query or reference codes outside ``[0, 1]`` (``[-1, 1]`` with ``signed``) and
        L2-normalised codes, which would binarise to noise.
        """
        check_code_range(query, "query", signed=self.signed, hint=_TESTER_HINT)
        if reference is not None:
            check_code_range(reference, "reference", signed=self.signed, hint=_TESTER_HINT)
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
