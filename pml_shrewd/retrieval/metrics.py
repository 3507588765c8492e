"""Retrieval metrics over a ranked database: mAP, P@k, HP@k curve, mAHP@k.

**One API** for :func:`mean_average_precision`, :func:`precision_at_k`, :func:`hp_at_k`,
:func:`mahp_at_k` and :func:`evaluate_codes`: four positional arguments
``(query_codes, db_codes, query_labels, db_labels)``, everything else keyword-only, and
each name means the same everywhere:

- ``query_codes`` / ``db_codes``: the model's codes, one row per item, unpacked (numpy or
  torch, any float dtype incl. bfloat16). For the Hamming ranking they must lie in ``[0, 1]``
  (0/1 bits, or sigmoid codes, binarised as ``code > 0.5``; raw logits and L2-normalised
  codes are refused, see :func:`pml_shrewd.retrieval.codes.check_code_range`); for the
  ``"l1"`` / ``"l2"`` rankings they are compared as they are.
- ``query_labels`` / ``db_labels``: one integer label per item.
- ``k``: the rank cut-off, default :data:`DEFAULT_K` (250, the paper's mAHP@250) in every
  function; clipped to the database size. :func:`mean_average_precision` alone defaults to
  ``k=None``, the whole ranking (the paper's mAP).
- ``semantic_distance``: a provider or class-by-class matrix (below); required by the HP
  metrics, optional in :func:`evaluate_codes`.
- ``distance``: ``"hamming"`` (default), ``"l1"``, ``"l2"`` or ``"cosine"``; ``ref_includes_query`` (below).

The database is ranked for every query by the distance between codes:

- ``distance="hamming"``: Hamming distance between the bits ``code > 0.5``;
- ``distance="l1"`` / ``"l2"``: continuous codes, Manhattan / Euclidean distance.
- ``distance="cosine"``: any real vectors (e.g. backbone features), by cosine similarity.

**Ties** (``ties=``, every function): Hamming distances take only ``K + 1`` values, so
ties are common and how they are ordered matters (an ImageFolder database is sorted by
class, so the index order favours low class ids).

- ``"index"`` (default): broken by database index (a stable sort): among items at the same
  distance, the one that comes first in the database ranks first. Deterministic.
- ``"expected"``: the expectation over all orders inside each group of tied distances
  (equal Hamming distances; exactly equal floats for ``"l1"`` / ``"l2"``), in closed form
  (McSherry & Najork, "Computing Information Retrieval Performance Measures Efficiently in
  the Presence of Tied Scores", ECIR 2008): P@k and HP@k give every place of a group its
  mean relevance / mean gain (they are linear in the order; so is mAHP@k); AP takes their
  expected-AP formula with harmonic numbers; AP@k, divided by the hits in the top k, also
  averages over the hypergeometric number of relevant items of the group cut at k.
- ``"best"`` / ``"worst"``: relevant items (for AP, AP@k, P@k) or most similar items (for
  HP@k) first / last inside each tie group: the maximum / minimum over all tie orders of
  AP, P@k, every HP@i and mAHP@k, so ``[worst, best]`` is the spread the tie order can
  cause. AP@k is not monotone in that order (an extra hit can lower the mean precision of
  the hits): for it they are the values of those two orders, not bounds.

**Relevance** for mAP and P@k is "same label". **Semantic similarity** for HP@k
is ``s = 1 - d(y_q, y_r)`` from a semantic-distance provider (any callable
``provider(ids_a, ids_b) -> (A, B)`` tensor of distances in ``[0, 1]``, e.g.
:class:`pml_shrewd.SemanticDistance`) or a class-by-class distance matrix
(numpy array / tensor, indexed by label).

Definitions (Arponen & Bishop, arXiv 2005.04917; Barz & Denzler, WACV 2019):

- ``AP`` (whole ranking) ``= (1/R) * sum over relevant items r of P@rank(r)``,
  ``R`` the number of relevant database items.
- ``AP@k`` ``= sum_{i<=k, rel_i} P@i / (number of relevant items in the top k)``
  (the deep-hashing convention of HashNet / DeepHash; 0 if none in the top k).
- ``P@k`` = relevant items in the top k / k (k clipped to the database size).
- ``HP@k = sum_{i<=k} s(q, r_i) / max over any k database items of the same sum``
  (the ideal takes the k most similar database items). ``HP@1..k`` is a curve.
- ``AHP@k = trapz(HP@1..HP@k, dx=1/k)`` per query (Barz & Denzler's code);
  ``mAHP@k`` is its mean over queries.

**Queries with nothing to find**: a query whose class is absent from the
database has ``AP = 0`` (and ``P@k = 0``); a ``0/0`` in HP (no database item
has any similarity to the query) counts as ``HP = 0``. Such queries stay in the
mean (the denominator is always the number of queries), so a database that
misses classes lowers the score instead of silently shrinking the query set.

If ``k`` exceeds the database size ``N`` (``N - 1`` with ``ref_includes_query``),
``k`` is clipped to it.

``ref_includes_query=True`` (as in PML's ``AccuracyCalculator``): the first
``len(queries)`` database items are the queries themselves; each query's own
item is removed from its ranking and from its relevant set.

Speed: Hamming distances come from faiss's popcount kernel in chunks of
queries; each row is ranked by sorting integer keys ``distance * N + index``
(unique, so the order is exactly the stable one) with numpy's SIMD sort, and the
rank of every relevant item is found by binary search. HP@k needs only the top k
and, per query class, the ideal curve from the class histogram of the database.
With ``ties`` other than ``"index"`` the same pass also counts, per query, the size, the
relevant items and the class histogram of the tie group at the cut-off (the only group that
can run on past the top k); memory stays per chunk of queries.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import faiss
import numpy as np
import torch

from .codes import _packbits, binarize, check_binary, check_code_range, to_numpy

__all__ = [
    "DEFAULT_K",
    "mean_average_precision",
    "precision_at_k",
    "hp_at_k",
    "mahp_at_k",
    "evaluate_codes",
    "evaluate_embeddings",
    "bit_balance",
]

#: Rankings: Hamming of binarised codes; L1 / L2 of vectors as they are; cosine (L2 of unit rows).
DISTANCES = ("hamming", "l1", "l2", "cosine")
#: Orders inside groups of tied distances (see the module docstring, "Ties").
TIES = ("index", "expected", "best", "worst")
#: The one default rank cut-off ``k`` of every metric function (the paper's mAHP@250).
DEFAULT_K = 250
# Rough number of (query, database) entries per chunk: bounds memory (~4-8 bytes each).
_CHUNK_ENTRIES = 1 << 24


# ----------------------------------------------------------------------------- inputs


def _prepare_codes(codes: Any, name: str, distance: str) -> np.ndarray:
    arr = to_numpy(codes, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (num_items, num_bits) array, got shape {arr.shape}")
    if distance == "hamming":
        check_code_range(arr, name)
        # Packing pads the last byte with zeros in every code, which adds no distance.
        return _packbits(binarize(arr))
    if not np.issubdtype(arr.dtype, np.number) and arr.dtype != np.bool_:
        raise TypeError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float32, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if distance == "cosine":
        norms = np.linalg.norm(arr, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError(f"{name} has an all-zero row, which has no cosine to anything")
        arr = arr / norms  # L2 of unit rows ranks exactly as cosine: |a - b|^2 = 2 - 2 cos
    return np.ascontiguousarray(arr)


def _prepare_labels(labels: Any, n: int, name: str) -> np.ndarray:
    arr = to_numpy(labels, name)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} labels but there are {n} codes")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(f"{name} must hold integer labels, got non-integer values")
        arr = arr.astype(np.int64)
    elif not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer labels, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_distance(distance: str) -> None:
    if distance not in DISTANCES:
        raise ValueError(f"distance must be one of {DISTANCES}, got {distance!r}")


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"ties must be one of {TIES}, got {ties!r}")


def _check_k(k: Any, name: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def _prepare_code_pair(query_codes: Any, db_codes: Any, distance: str) -> tuple[np.ndarray, np.ndarray]:
    """The query and database codes as ``distance`` ranks them (packed bits for Hamming); one width."""
    _check_distance(distance)
    q = _prepare_codes(query_codes, "query_codes", distance)
    db = _prepare_codes(db_codes, "db_codes", distance)
    q_width, db_width = to_numpy(query_codes).shape[1], to_numpy(db_codes).shape[1]
    if q_width != db_width:
        raise ValueError(
            f"query codes have width {q_width} but database codes {db_width}: "
            "both must have the same number of bits / dimensions"
        )
    return q, db


def _prepare_inputs(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    distance: str,
    ties: str,
    ref_includes_query: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(query codes, db codes, query labels, db labels)`` checked as every ranking of labelled
    codes needs them: at least one query, a database left after removing the own item, and with
    ``ref_includes_query`` the queries as the first database items."""
    _check_ties(ties)
    q, db = _prepare_code_pair(query_codes, db_codes, distance)
    nq, n = q.shape[0], db.shape[0]
    ql = _prepare_labels(query_labels, nq, "query_labels")
    dl = _prepare_labels(db_labels, n, "db_labels")
    if nq == 0:
        raise ValueError("there are no queries")
    if n == 0:
        raise ValueError("the database is empty")
    if ref_includes_query:
        if n < nq:
            raise ValueError("ref_includes_query=True needs the queries to be the first database items")
        if not (np.array_equal(q, db[:nq]) and np.array_equal(ql, dl[:nq])):
            raise ValueError(
                "ref_includes_query=True but the first len(query) database codes/labels differ from the queries"
            )
        if n == 1:
            raise ValueError("ref_includes_query=True leaves an empty database (one item)")
    return q, db, ql, dl


class _Similarity:
    """Semantic similarities ``1 - d`` between query labels and the database's distinct labels."""

    def __init__(self, semantic_distance: Any, db_labels: np.ndarray, self_excluded: bool):
        self.source = semantic_distance
        self.db_unique, self.db_index, counts = np.unique(db_labels, return_inverse=True, return_counts=True)
        self.db_counts = counts.astype(np.int64)
        self.self_excluded = self_excluded
        self._ideal: dict[int, np.ndarray] = {}
        self.matrix: np.ndarray | None = None
        if isinstance(semantic_distance, (np.ndarray, torch.Tensor)):
            m = to_numpy(semantic_distance, "semantic_distance").astype(np.float64)
            if m.ndim != 2:
                raise ValueError(f"a semantic distance matrix must be 2-D, got shape {m.shape}")
            self.matrix = m
        elif not callable(semantic_distance):
            raise TypeError(
                "semantic_distance must be a provider (callable: provider(ids_a, ids_b) -> distances) "
                f"or a class-by-class distance matrix, got {type(semantic_distance).__name__}"
            )

    def rows(self, labels: np.ndarray) -> np.ndarray:
        """Similarities ``(len(labels), num distinct db labels)`` for distinct query ``labels``."""
        if self.matrix is not None:
            m = self.matrix
            hi = max(int(labels.max(initial=-1)), int(self.db_unique.max(initial=-1)))
            if labels.min(initial=0) < 0 or self.db_unique.min(initial=0) < 0 or hi >= min(m.shape):
                raise IndexError(
                    f"labels must index the semantic distance matrix of shape {m.shape}; got labels "
                    f"in [{min(labels.min(initial=0), self.db_unique.min(initial=0))}, {hi}]"
                )
            dist = m[np.ix_(labels, self.db_unique)]
        else:
            out = self.source(torch.as_tensor(labels), torch.as_tensor(self.db_unique))
            dist = to_numpy(out, "semantic distances").astype(np.float64)
            if dist.shape != (len(labels), len(self.db_unique)):
                raise ValueError(
                    f"the semantic distance provider returned shape {dist.shape}, expected "
                    f"{(len(labels), len(self.db_unique))}"
                )
        if not np.isfinite(dist).all() or dist.min(initial=0) < -1e-6 or dist.max(initial=0) > 1 + 1e-6:
            raise ValueError("semantic distances must be finite and lie in [0, 1]")
        return 1.0 - np.clip(dist, 0.0, 1.0)

    def ideal(self, label: int, sims: np.ndarray, k: int) -> np.ndarray:
        """Cumulative ideal similarity sums for ranks ``1..k`` (the best any ranking can do)."""
        cached = self._ideal.get(label)
        if cached is not None and len(cached) >= k:
            return cached[:k]
        counts = self.db_counts.copy()
        if self.self_excluded:
            # The query's own item is not in its ranking.
            pos = np.searchsorted(self.db_unique, label)
            if pos < len(self.db_unique) and self.db_unique[pos] == label:
                counts[pos] -= 1
        keep = np.nonzero(counts > 0)[0]
        s, c = sims[keep], counts[keep]
        if len(s) > k:  # only the k most similar classes can reach the top k
            part = np.argpartition(-s, k - 1)[:k]
            s, c = s[part], c[part]
        order = np.argsort(-s, kind="stable")
        best = np.cumsum(np.repeat(s[order], c[order])[:k])
        self._ideal[label] = best
        return best


# ----------------------------------------------------------------------------- engine


def _distances(q: np.ndarray, db: np.ndarray, distance: str, db_t: torch.Tensor | None) -> np.ndarray:
    if distance == "hamming":
        out = np.empty((q.shape[0], db.shape[0]), dtype=np.int32)
        faiss.hammings(
            faiss.swig_ptr(q), faiss.swig_ptr(db), q.shape[0], db.shape[0], q.shape[1], faiss.swig_ptr(out)
        )
        return out
    if distance == "l1":
        # faiss's SIMD L1 kernel: about twice torch.cdist(p=1) on CPU; equal codes get equal distances.
        return faiss.pairwise_distances(q, db, metric=faiss.METRIC_L1)
    # Exact (no matmul shortcut) so that identical codes get exactly equal distances.
    d = torch.cdist(torch.from_numpy(q), db_t, p=2.0, compute_mode="donot_use_mm_for_euclid_dist")
    return d.numpy()


def _hamming_keys(d: np.ndarray, num_bits: int, start: int, exclude_self: bool) -> np.ndarray:
    """Integer keys ``distance * N + index`` of Hamming distances ``d`` (queries ``start`` on):
    unique, so sorting them gives the stable (distance, index) order. ``exclude_self``: query
    ``i``'s own item ``i`` takes the sentinel distance ``num_bits + 1``, after every real one."""
    n = d.shape[1]
    max_d = num_bits + 1
    key_dtype = np.int32 if (max_d + 1) * n < 2**31 else np.int64
    if exclude_self:
        rows = np.arange(d.shape[0])
        d[rows, rows + start] = max_d
    keys = d.astype(key_dtype, copy=False)
    keys *= n
    keys += np.arange(n, dtype=key_dtype)
    return keys


def _float_keys(d: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """int64 keys ``(float32 bits of d) << 32 | index``: non-negative float bit patterns sort like the floats."""
    bits = d.view(np.int32)
    if sys.byteorder == "little":
        # Writing the two 32-bit halves directly is ~8x faster than shift-and-or.
        keys = np.empty(d.shape, dtype=np.int64)
        halves = keys.view(np.int32).reshape(*d.shape, 2)
        halves[..., 0] = idx
        halves[..., 1] = bits
        return keys
    return (bits.astype(np.int64) << 32) | idx


@dataclass
class _RankOutputs:
    """What one ranking pass scores and where it writes, shared by the chunks of queries."""

    dl: np.ndarray  # database labels
    n: int
    n_eff: int  # database items a query ranks (n less its own with ref_includes_query)
    hamming: bool
    ties: str
    tables: _TieTables | None
    ap_ks: list[int]
    p_ks: list[int]
    hp_k: int | None
    sims: dict[str | None, _Similarity]
    ap: np.ndarray | None
    ap_k: dict[int, np.ndarray]
    p_k: dict[int, np.ndarray]
    hp: dict[str | None, np.ndarray]
    gain: np.ndarray | None

    def store_cut_figures(self, rel_pos: np.ndarray, start: int, ap_ks: Sequence[int]) -> None:
        """P@k and AP@k (for ``ap_ks``) of the rows from ``start`` on, from the relevance of
        each place of the top ``kmax`` (0/1, or the expected relevance for P@k)."""
        cum = np.cumsum(rel_pos, axis=1)
        c = len(rel_pos)
        for k in self.p_ks:
            kk = min(k, self.n_eff)
            self.p_k[k][start : start + c] = cum[:, kk - 1] / kk
        ranks = np.arange(1, rel_pos.shape[1] + 1, dtype=np.float64)
        for k in ap_ks:
            hits = cum[:, k - 1]
            prec_sum = ((cum[:, :k] / ranks[:k]) * rel_pos[:, :k]).sum(axis=1)
            self.ap_k[k][start : start + c] = np.divide(prec_sum, hits, out=np.zeros(c), where=hits > 0)

    def store_hp(
        self,
        name: str | None,
        sim: _Similarity,
        uq: np.ndarray,
        srows_u: np.ndarray,
        uinv,
        gain_pos,
        start: int,
    ) -> None:
        """HP@1..hp_k of the rows from ``start`` on from each place's gain (similarity)."""
        gained = np.cumsum(gain_pos, axis=1)
        ideal = np.stack([sim.ideal(int(lab), srows_u[i], self.hp_k) for i, lab in enumerate(uq)])[uinv]
        self.hp[name][start : start + len(gained)] = np.divide(
            gained, ideal, out=np.zeros_like(gained), where=ideal > 0
        )
        if name is None:
            self.gain[start : start + len(gained)] = gained[:, -1]


def _rank_queries(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    distance: str = "hamming",
    full_ap: bool = False,
    ap_ks: Sequence[int] = (),
    p_ks: Sequence[int] = (),
    hp_k: int | None = None,
    semantic_distance: Any = None,
    extra_semantic_distances: Mapping[str, Any] | None = None,
    ref_includes_query: bool = False,
    ties: str = "index",
    chunk_size: int | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """One pass over the queries; returns per-query AP / AP@k / P@k and the HP@1..k rows
    (``"hp"``; ``"hp_extra"``: the rows of each of ``extra_semantic_distances`` by name, from the
    same ranking; ``"gain_k"``: per query, the sum of the similarities of the top ``hp_k``)."""
    q, db, ql, dl = _prepare_inputs(
        query_codes, db_codes, query_labels, db_labels, distance, ties, ref_includes_query
    )
    nq, n = q.shape[0], db.shape[0]
    n_eff = n - int(ref_includes_query)
    ap_ks = [min(_check_k(k), n_eff) for k in ap_ks]
    p_ks_c = [_check_k(k) for k in p_ks]
    sims: dict[str | None, _Similarity] = {}
    if hp_k is not None:
        hp_k = min(_check_k(hp_k), n_eff)
        if semantic_distance is None:
            raise ValueError("HP@k needs a semantic_distance (a provider or a class-by-class matrix)")
        sims = {None: _Similarity(semantic_distance, dl, ref_includes_query)}
        for name, extra in (extra_semantic_distances or {}).items():
            sims[name] = _Similarity(extra, dl, ref_includes_query)
    elif extra_semantic_distances:
        raise ValueError("extra_semantic_distances need HP@k scoring: pass a semantic_distance as well")
    kmax = max([*ap_ks, *(min(k, n_eff) for k in p_ks_c), hp_k or 0])

    # Relevant database indices per label (ascending), for the whole-ranking AP.
    rel_index: dict[int, np.ndarray] = {}
    if full_ap:
        order = np.argsort(dl, kind="stable")
        labs, starts = np.unique(dl[order], return_index=True)
        ends = np.append(starts[1:], n)
        rel_index = {int(lab): order[s:e] for lab, s, e in zip(labs, starts, ends, strict=True)}

    db_t = None if distance == "hamming" else torch.from_numpy(db)
    idx = np.arange(n, dtype=np.int64)

    out = _RankOutputs(
        dl=dl,
        n=n,
        n_eff=n_eff,
        hamming=distance == "hamming",
        ties=ties,
        tables=_TieTables(n) if ties != "index" else None,
        ap_ks=ap_ks,
        p_ks=p_ks_c,
        hp_k=hp_k,
        sims=sims,
        ap=np.zeros(nq) if full_ap else None,
        ap_k={k: np.zeros(nq) for k in ap_ks},
        p_k={k: np.zeros(nq) for k in p_ks_c},
        hp={name: np.zeros((nq, hp_k)) for name in sims},
        gain=np.zeros(nq) if hp_k else None,
    )

    def run_chunk(start: int, stop: int) -> None:
        d = _distances(q[start:stop], db, distance, db_t)
        if distance == "hamming":
            keys = _hamming_keys(d, db.shape[1] * 8, start, ref_includes_query)
        else:
            d += 0.0  # turns a possible -0.0 into +0.0, whose bit pattern sorts first
            if ref_includes_query:
                rows = np.arange(stop - start)
                d[rows, rows + start] = np.inf
            keys = _float_keys(d, idx)
        qlab = ql[start:stop]
        rel_keys: list[np.ndarray | None] = []
        if full_ap:
            for r in range(stop - start):
                rel_idx = rel_index.get(int(qlab[r]))
                # The own item (ref_includes_query) carries the largest key: drop it after sorting.
                rel_keys.append(None if rel_idx is None else np.sort(keys[r, rel_idx])[: len(rel_idx) - drop])
            keys.sort(axis=1)  # in place: keys are unique, so this is the stable (distance, index) order
            top = keys[:, :kmax]
        elif kmax < n:
            top = np.sort(np.partition(keys, kmax - 1, axis=1)[:, :kmax], axis=1)
        else:
            top = np.sort(keys, axis=1)
        top_ids = _key_ids(top, n, out.hamming)

        if out.tables is not None:
            _tie_chunk(out, keys, top, top_ids, qlab, rel_keys, start)
            return

        if ap_ks or p_ks_c:
            out.store_cut_figures(dl[top_ids] == qlab[:, None], start, ap_ks)

        if full_ap:
            for r, rk in enumerate(rel_keys):
                if rk is None or len(rk) == 0:
                    continue  # class absent from the database: AP = 0
                pos = np.searchsorted(keys[r], rk) + 1  # 1-based rank of each relevant item
                out.ap[start + r] = np.mean(np.arange(1, len(rk) + 1) / pos)

        if hp_k:
            uq, uinv = np.unique(qlab, return_inverse=True)
            for name, sim in sims.items():
                srows = sim.rows(uq)
                gains = srows[uinv[:, None], sim.db_index[top_ids[:, :hp_k]]]
                out.store_hp(name, sim, uq, srows, uinv, gains, start)

    drop = int(ref_includes_query)
    workers = max(1, num_threads if num_threads is not None else min(8, os.cpu_count() or 1))
    step = chunk_size or max(1, min(_CHUNK_ENTRIES // n, math.ceil(nq / (4 * workers))))
    bounds = [(s, min(nq, s + step)) for s in range(0, nq, step)]
    # A bar only where ranking takes a while (10,000 queries x 50,000 codes: about 20 s on 2 cores).
    from tqdm.auto import tqdm

    bar = tqdm(total=nq, desc="ranking", unit="query", leave=False, disable=nq * n < 10**8, mininterval=1)
    if workers == 1 or len(bounds) == 1:
        for s, e in bounds:
            run_chunk(s, e)
            bar.update(e - s)
    else:
        # numpy's sorts and faiss release the GIL, so chunks of queries overlap on several cores.
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for (s, e), fut in [((s, e), pool.submit(run_chunk, s, e)) for s, e in bounds]:
                fut.result()
                bar.update(e - s)
    bar.close()

    hp_main = out.hp.pop(None, None)
    return {
        "ap": out.ap,
        "ap_k": out.ap_k,
        "p_k": out.p_k,
        "hp": hp_main,
        "hp_extra": out.hp,
        "hp_k": hp_k,
        "gain_k": out.gain,
    }


# ----------------------------------------------------------------------------- ties


class _TieTables:
    """Harmonic numbers ``H[j] = sum_{t<=j} 1/t`` and log-factorials ``log j!`` for ``j <= n``."""

    def __init__(self, n: int):
        j = np.arange(1, n + 1, dtype=np.float64)
        self.harmonic = np.concatenate(([0.0], np.cumsum(1.0 / j)))
        self.log_fact = np.concatenate(([0.0], np.cumsum(np.log(j))))

    def group_ap_sum(self, s, m, r, r_before, t=None, h=None):
        """Expected sum of ``P@i`` over the relevant items among the first ``t`` places of a tie
        group (McSherry & Najork 2008): the group holds ranks ``s+1..s+m``, ``h`` of its first ``t``
        places are relevant (uniformly placed), ``r_before`` relevant items rank above it.
        ``t=None, h=None``: the whole group (``t = m``, ``h = r``)."""
        t = m if t is None else t
        h = r if h is None else h
        t_f = np.maximum(t, 1).astype(np.float64)
        a = self.harmonic[s + t] - self.harmonic[s]  # sum_{i=1..t} 1/(s+i)
        b = t - (s + 1) * a  # sum_{i=1..t} (i-1)/(s+i)
        within = np.divide(h - 1.0, t_f - 1.0, out=np.zeros(np.broadcast(h, t_f).shape), where=t_f > 1)
        return (h / t_f) * ((r_before + 1.0) * a + within * b)

    def hypergeom(self, m, r, t, h):
        """P(``h`` relevant among ``t`` draws without replacement from ``m`` items, ``r`` relevant)."""
        ok = (h >= 0) & (h <= r) & (t - h >= 0) & (t - h <= m - r)
        hc = np.where(ok, h, 0)
        lf = self.log_fact
        log_p = (
            lf[r]
            - lf[hc]
            - lf[np.where(ok, r - hc, 0)]
            + lf[m - r]
            - lf[np.where(ok, t - hc, 0)]
            - lf[np.where(ok, m - r - t + hc, 0)]
            - (lf[m] - lf[t] - lf[m - t])
        )
        return np.where(ok, np.exp(np.where(ok, log_p, 0.0)), 0.0)


def _key_group(keys: np.ndarray, n: int, hamming: bool) -> np.ndarray:
    """The distance part of ranking keys (equal for tied items): ``key // n`` or the float bits."""
    return keys // n if hamming else keys >> 32


def _group_key(g: np.ndarray, n: int, hamming: bool) -> np.ndarray:
    """The smallest ranking key of distance group ``g``."""
    return g * n if hamming else g << 32


def _key_ids(keys: np.ndarray, n: int, hamming: bool) -> np.ndarray:
    return (keys % n if hamming else keys & 0xFFFFFFFF).astype(np.int64, copy=False)


def _tie_full_ap(rk, keys_row, n, hamming, ties, tables) -> float:
    """Whole-ranking AP of one query under ``ties`` from its sorted keys and its relevant items' keys."""
    if rk is None or len(rk) == 0:
        return 0.0
    g = _key_group(rk, n, hamming)
    uniq, first, r = np.unique(g, return_index=True, return_counts=True)
    s = np.searchsorted(keys_row, _group_key(uniq, n, hamming))
    m = np.searchsorted(keys_row, _group_key(uniq + 1, n, hamming)) - s
    total = len(rk)
    if ties == "expected":
        return float(tables.group_ap_sum(s, m, r, first).sum() / total)
    within = np.arange(total) - np.repeat(first, r)
    offset = s if ties == "best" else s + m - r
    ranks = np.repeat(offset, r) + within + 1
    return float(np.mean(np.arange(1, total + 1) / ranks))


def _tie_chunk(
    out: _RankOutputs,
    keys: np.ndarray,
    top: np.ndarray,
    top_ids: np.ndarray,
    qlab: np.ndarray,
    rel_keys: list[np.ndarray | None],
    start: int,
) -> None:
    """The metrics of one chunk of queries with ties ordered by ``ties`` (not ``"index"``).

    Inside the top ``kmax`` every tie group is complete except the last one, which may run on
    past ``kmax``: its size, relevant count and class histogram come from the whole row.
    Per place, the (expected) relevance and gain then follow from the group alone."""
    n, hamming, ties, tables, dl, sims, hp_k = (
        out.n,
        out.hamming,
        out.ties,
        out.tables,
        out.dl,
        out.sims,
        out.hp_k,
    )
    c, kmax = top.shape
    rows = np.arange(c)
    if rel_keys:
        for r, rk in enumerate(rel_keys):
            out.ap[start + r] = _tie_full_ap(rk, keys[r], n, hamming, ties, tables)
    if not (out.ap_ks or out.p_ks or hp_k):
        return
    gv = _key_group(top, n, hamming)
    dk = gv[:, -1]
    in_group = (keys >= _group_key(dk, n, hamming)[:, None]) & (
        keys < _group_key(dk + 1, n, hamming)[:, None]
    )
    m_last = in_group.sum(axis=1)
    # The relevant count and (for HP) the class histogram of the last group. Columns are not
    # database indices once a row is sorted: the ids come from the keys, a block of rows at a time.
    num_cls = len(sims[None].db_unique) if hp_k else 0
    r_last = np.zeros(c, dtype=np.int64)
    hist = np.zeros((c, num_cls), dtype=np.int64)
    block = max(1, (1 << 20) // n)
    for b0 in range(0, c, block):
        b1 = min(c, b0 + block)
        hr, hc = np.nonzero(in_group[b0:b1])
        ids = _key_ids(keys[b0 + hr, hc], n, hamming)
        r_last[b0:b1] = np.bincount(hr, weights=dl[ids] == qlab[b0 + hr], minlength=b1 - b0)
        if hp_k:
            flat_cls = hr * num_cls + sims[None].db_index[ids]
            hist[b0:b1] = np.bincount(flat_cls, minlength=(b1 - b0) * num_cls).reshape(b1 - b0, num_cls)

    pos = np.arange(kmax)
    new = np.ones((c, kmax), dtype=bool)
    new[:, 1:] = gv[:, 1:] != gv[:, :-1]
    s_pos = np.maximum.accumulate(np.where(new, pos, 0), axis=1)  # 0-based first place of the group
    j_pos = pos - s_pos  # place inside the group
    in_last = gv == dk[:, None]
    flat = (np.cumsum(new, axis=1) - 1) + (rows * kmax)[:, None]
    top_count = np.bincount(flat.ravel(), minlength=c * kmax)
    size = np.where(in_last, m_last[:, None], top_count[flat])
    rel = dl[top_ids] == qlab[:, None]
    top_rel = np.bincount(flat.ravel(), weights=rel.ravel(), minlength=c * kmax)
    r_g = np.where(in_last, r_last[:, None], top_rel[flat].astype(np.int64))

    if ties == "expected":
        rel_pos = r_g / size
    elif ties == "best":
        rel_pos = (j_pos < r_g).astype(np.float64)
    else:
        rel_pos = (j_pos >= size - r_g).astype(np.float64)
    # "best" / "worst" place 0/1 relevances, so AP@k is the plain formula; "expected" P@k too.
    out.store_cut_figures(rel_pos, start, out.ap_ks if ties != "expected" else ())
    if out.ap_ks and ties == "expected":
        ranks = np.arange(1, kmax + 1, dtype=np.float64)
        cum_rel = np.cumsum(rel, axis=1)  # exact at the end of each complete group
        r_before = np.where(s_pos > 0, cum_rel[rows[:, None], np.maximum(s_pos - 1, 0)], 0)
        frac = np.divide(r_g - 1.0, size - 1.0, out=np.zeros((c, kmax)), where=size > 1)
        e = (r_g / size) * (r_before + 1.0 + j_pos * frac) / ranks  # E[rel_i * P@i]
        cum_e = np.cumsum(e, axis=1)
        for k in out.ap_ks:
            # The group holding place k is cut after t of its m places: average over h, the
            # relevant items among those t (hypergeometric), of (before + E[group part | h]) / hits.
            s, m, r = s_pos[:, k - 1], size[:, k - 1], r_g[:, k - 1]
            rb = r_before[:, k - 1]
            t = k - s
            num_before = np.where(s > 0, cum_e[rows, np.maximum(s - 1, 0)], 0.0)
            h = np.arange(int(t.max()) + 1)[None, :]
            pmf = tables.hypergeom(m[:, None], r[:, None], t[:, None], h)
            part = tables.group_ap_sum(s[:, None], m[:, None], r[:, None], rb[:, None], t[:, None], h)
            hits = rb[:, None] + h
            val = np.divide(num_before[:, None] + part, hits, out=np.zeros(pmf.shape), where=hits > 0)
            out.ap_k[k][start : start + c] = (pmf * val).sum(axis=1)

    if hp_k:
        uq, uinv = np.unique(qlab, return_inverse=True)
        j_h, in_h = j_pos[:, :hp_k], in_last[:, :hp_k]
        gid = flat[:, :hp_k]
        for name, sim in sims.items():
            srows_u = sim.rows(uq)
            srows = srows_u[uinv]  # (c, classes)
            gains = np.take_along_axis(srows, sim.db_index[top_ids[:, :hp_k]], axis=1)
            if ties == "expected":
                sums = np.bincount(gid.ravel(), weights=gains.ravel(), minlength=c * kmax)[gid]
                last_mean = (hist * srows).sum(axis=1) / m_last
                gain_pos = np.where(in_h, last_mean[:, None], sums / size[:, :hp_k])
            else:
                sign = -1.0 if ties == "best" else 1.0
                order = np.lexsort((sign * gains, gid), axis=-1)
                gain_pos = np.take_along_axis(gains, order, axis=1)
                # The last group: its j-th place takes the j-th gain of the whole group, sorted.
                cls_order = np.argsort(sign * srows, axis=1, kind="stable")
                cum_cnt = np.cumsum(np.take_along_axis(hist, cls_order, axis=1), axis=1)
                big = n + 1
                at = (
                    np.searchsorted(
                        (cum_cnt + (rows * big)[:, None]).ravel(),
                        (np.maximum(j_h, 0) + (rows * big)[:, None]).ravel(),
                        side="right",
                    ).reshape(c, hp_k)
                    - (rows * num_cls)[:, None]
                )
                at = np.minimum(at, num_cls - 1)
                last_gain = np.take_along_axis(np.take_along_axis(srows, cls_order, axis=1), at, axis=1)
                gain_pos = np.where(in_h, last_gain, gain_pos)
            out.store_hp(name, sim, uq, srows_u, uinv, gain_pos, start)


def _hamming_knn(
    q: np.ndarray, db: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` of packed codes by Hamming distance, ties by database index.

    ``exclude_self``: query ``i`` is database item ``i`` and is left out of its own list.
    Returns ``(distances int32, indices int64)``, each ``(len(q), k)``; ``k`` must not exceed
    the database size (minus one with ``exclude_self``).
    """
    nq, n = q.shape[0], db.shape[0]
    out_d = np.empty((nq, k), dtype=np.int32)
    out_i = np.empty((nq, k), dtype=np.int64)
    step = max(1, _CHUNK_ENTRIES // max(n, 1))
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        d = _distances(q[start:stop], db, "hamming", None)
        keys = _hamming_keys(d, db.shape[1] * 8, start, exclude_self)
        top = np.partition(keys, k - 1, axis=1)[:, :k] if k < n else keys
        top = np.sort(top, axis=1)[:, :k]
        out_d[start:stop] = top // n
        out_i[start:stop] = top % n
    return out_d, out_i


def _ahp(hp_rows: np.ndarray) -> np.ndarray:
    """Per-query area under HP@1..k by the trapezoid rule with ``dx = 1/k`` (Barz & Denzler)."""
    trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy < 2 calls it trapz
    return trapezoid(hp_rows, dx=1.0 / hp_rows.shape[1], axis=1)


# ----------------------------------------------------------------------------- public API


def mean_average_precision(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    k: int | None = None,
    distance: str = "hamming",
    ref_includes_query: bool = False,
    ties: str = "index",
) -> float:
    """mAP of ranking the database by code distance (Arponen & Bishop, 2020, section 4).

    ``k=None`` (default): AP over the whole ranking; ``k``: AP@k (divided by the relevant
    items found in the top k). Relevant = same label; ties broken by database index
    (``ties="index"``) or averaged over all orders inside tie groups (``"expected"``), or
    the ``"best"`` / ``"worst"`` order (module docstring); a query whose class is absent from
    the database scores 0.

    Example::

        m = mean_average_precision(query_z, db_z, query_labels, db_labels)  # Hamming of z > 0.5
        m250 = mean_average_precision(query_z, db_z, query_labels, db_labels, k=250)
        neutral = mean_average_precision(query_z, db_z, query_labels, db_labels, ties="expected")
    """
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        full_ap=k is None,
        ap_ks=() if k is None else (k,),
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    per_query = res["ap"] if k is None else next(iter(res["ap_k"].values()))
    return float(per_query.mean())


def precision_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ref_includes_query: bool = False,
    ties: str = "index",
) -> float:
    """Mean fraction of same-label items among the top ``k`` of the ranking (``ties`` as in the module docstring).

    Example::

        p = precision_at_k(query_z, db_z, query_labels, db_labels, k=100)
        p_cont = precision_at_k(query_z, db_z, query_labels, db_labels, k=100, distance="l1")
        print(p, p_cont)
    """
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        p_ks=(k,),
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    return float(res["p_k"][_check_k(k)].mean())


def hp_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ref_includes_query: bool = False,
    ties: str = "index",
) -> np.ndarray:
    """The mean hierarchical-precision curve ``[HP@1, ..., HP@k]`` over queries (Barz & Denzler, 2019).

    ``semantic_distance``: a provider (``provider(ids_a, ids_b)``, labels are its ids) or a
    class-by-class distance matrix in ``[0, 1]``. Returns a float64 array of length
    ``min(k, database size)``. ``ties="expected"``: each place of a tie group gets the
    group's mean gain; ``"best"`` / ``"worst"``: the most similar items first / last.

    Example::

        provider = HierarchyDistance.from_file("cifar100.parent-child.txt", classes)
        curve = hp_at_k(qz, dbz, ql, dl, semantic_distance=provider, k=250)
        plot_hp_curves({"SHREWD 64 bit": curve}, "hp.png")
    """
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        hp_k=k,
        semantic_distance=semantic_distance,
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    return res["hp"].mean(axis=0)


def mahp_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ref_includes_query: bool = False,
    ties: str = "index",
) -> float:
    """mAHP@k: mean over queries of ``trapz(HP@1..HP@k, dx=1/k)`` (Barz & Denzler; the paper's mAHP@250).

    ``ties`` as in :func:`hp_at_k` (``"expected"`` is exact: AHP is linear in the HP curve).

    Example::

        score = mahp_at_k(qz, dbz, ql, dl, semantic_distance=class_distance_matrix, k=250)
        score_cont = mahp_at_k(qz, dbz, ql, dl, semantic_distance=class_distance_matrix, distance="l1")
        print(score, score_cont)
    """
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        hp_k=k,
        semantic_distance=semantic_distance,
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    return float(_ahp(res["hp"]).mean())


def bit_balance(bits: Any) -> float:
    """Mean over bits of ``|fraction of ones - 0.5|``: 0 = every bit splits the codes evenly, 0.5 = constant bits.

    Example::

        b = bit_balance(binarize(db_z))
        assert 0.0 <= b <= 0.5
        print(f"bit balance {b:.3f}")
    """
    arr = to_numpy(bits, "bits")
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(f"bits must be a non-empty 2-D (N, K) array, got shape {arr.shape}")
    check_binary(arr, "bits")
    return float(np.abs(arr.mean(axis=0, dtype=np.float64) - 0.5).mean())


def _suffixed(key: str, suffix: str) -> str:
    """``"mAHP@k [tree]"`` + ``"_continuous"`` -> ``"mAHP@k_continuous [tree]"``."""
    head, sep, tail = key.partition(" ")
    return f"{head}{suffix}{sep}{tail}"


def _ranking_figures(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    k: int,
    distance: str,
    semantic_distance: Any,
    extra_semantic_distances: Mapping[str, Any] | None,
    ref_includes_query: bool,
    return_curves: bool,
    ties: str,
) -> dict[str, Any]:
    """mAP, mAP@k, P@k (and mAHP@k, curves, extra hierarchies) of one ranking."""
    hp = k if semantic_distance is not None else None
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        full_ap=True,
        ap_ks=(k,),
        p_ks=(k,),
        hp_k=hp,
        semantic_distance=semantic_distance,
        extra_semantic_distances=extra_semantic_distances,
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    out: dict[str, Any] = {
        "mAP": float(res["ap"].mean()),
        "mAP@k": float(next(iter(res["ap_k"].values())).mean()),
        "P@k": float(res["p_k"][k].mean()),
    }
    if hp is not None:
        out["mAHP@k"] = float(_ahp(res["hp"]).mean())
        if return_curves:
            out["hp_curve"] = res["hp"].mean(axis=0).tolist()
        for name, rows in res["hp_extra"].items():
            out[f"mAHP@k [{name}]"] = float(_ahp(rows).mean())
    return out


def evaluate_embeddings(
    query_embeddings: Any,
    db_embeddings: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any = None,
    k: int = DEFAULT_K,
    distance: str = "cosine",
    ref_includes_query: bool = False,
    return_curves: bool = False,
    extra_semantic_distances: Mapping[str, Any] | None = None,
    ties: str = "index",
) -> dict[str, Any]:
    """The keys of :func:`evaluate_codes`' binary ranking (``"k"``, ``"mAP"``, ``"mAP@k"``, ``"P@k"``,
    ``"mAHP@k"``, curves, extra hierarchies) for real vectors that are no codes, e.g. backbone
    features ranked by cosine (no hashing): the continuous reference a hash is compared with.

    Example::

        m = evaluate_embeddings(test_x, train_x, test_y, train_y, semantic_distance=tree, k=250)
    """
    k = _check_k(k)
    n_eff = len(to_numpy(db_embeddings, "db_embeddings")) - int(ref_includes_query)
    k = min(k, n_eff) if n_eff > 0 else k
    out: dict[str, Any] = {"k": k}
    out.update(
        _ranking_figures(
            query_embeddings,
            db_embeddings,
            query_labels,
            db_labels,
            k=k,
            distance=distance,
            semantic_distance=semantic_distance,
            extra_semantic_distances=extra_semantic_distances,
            ref_includes_query=ref_includes_query,
            return_curves=return_curves,
            ties=ties,
        )
    )
    return out


def evaluate_codes(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any = None,
    k: int = DEFAULT_K,
    threshold: float = 0.5,
    continuous_distance: str = "l1",
    ref_includes_query: bool = False,
    return_curves: bool = False,
    extra_semantic_distances: Mapping[str, Any] | None = None,
    ties: str = "index",
) -> dict[str, Any]:
    """Evaluate codes in ``[0, 1]`` both binarised (Hamming ranking) and as they are (L1 ranking).

    ``query_codes`` / ``db_codes``: the model's codes in ``[0, 1]`` (e.g. sigmoid outputs; raw
    logits, ``[-1, 1]`` codes and L2-normalised codes are refused on either side with a
    ``ValueError`` that says what to do). They are binarised as ``code > threshold`` for the
    Hamming ranking and ranked as they are by ``continuous_distance`` (L1 by default: it becomes
    Hamming once binary), so the binarisation drop is visible.

    The keys are fixed; ``k`` is reported separately:

    - ``"k"``: the int used, ``min(k, database size)`` (one less with ``ref_includes_query``);
    - Hamming ranking of the binary codes: ``"mAP"`` (whole ranking), ``"mAP@k"``, ``"P@k"``
      and, given a ``semantic_distance``, ``"mAHP@k"``;
    - the same keys with the suffix ``"_continuous"`` for the ``continuous_distance`` ranking;
    - ``"bit_balance"`` (:func:`bit_balance` of the binary database codes) and
      ``"quantization_error"`` (mean ``|z - b|`` over database codes; 0 = already binary);
    - ``return_curves=True``: ``"hp_curve"`` / ``"hp_curve_continuous"`` (lists of length k);
    - ``extra_semantic_distances`` (name -> provider or matrix) scores the same two rankings
      with other hierarchies too, as ``"mAHP@k [name]"`` and ``"mAHP@k_continuous [name]"``,
      without ranking the database again.

    ``ties`` (``"index"``, ``"expected"``, ``"best"``, ``"worst"``; module docstring) orders
    tied distances in both rankings; the keys stay the same, so call it once per order to
    report the expected value and the spread.

    Example::

        metrics = evaluate_codes(test_z, train_z, test_y, train_y, semantic_distance=provider)
        print(metrics["k"], metrics["mAP"], metrics["mAHP@k"], metrics["mAHP@k_continuous"])
        print(metrics["bit_balance"])
    """
    k = _check_k(k)
    qz = to_numpy(query_codes, "query_codes")
    dz = to_numpy(db_codes, "db_codes")
    check_code_range(qz, "query_codes")
    check_code_range(dz, "db_codes")
    n_eff = (dz.shape[0] if dz.ndim else 0) - int(ref_includes_query)
    k = min(k, n_eff) if n_eff > 0 else k  # an empty database is refused by _rank_queries
    qb, db = binarize(qz, threshold), binarize(dz, threshold)
    out: dict[str, Any] = {"k": k}
    for suffix, qc, dc, dist in (("", qb, db, "hamming"), ("_continuous", qz, dz, continuous_distance)):
        figures = _ranking_figures(
            qc,
            dc,
            query_labels,
            db_labels,
            k=k,
            distance=dist,
            semantic_distance=semantic_distance,
            extra_semantic_distances=extra_semantic_distances,
            ref_includes_query=ref_includes_query,
            return_curves=return_curves,
            ties=ties,
        )
        out.update({_suffixed(key, suffix): v for key, v in figures.items()})
    out["bit_balance"] = bit_balance(db)
    out["quantization_error"] = float(np.abs(dz.astype(np.float64) - db).mean()) if dz.size else math.nan
    return out
