"""The published anchors' evaluation protocols, computed from the same codes as our metrics.

- :func:`leave_one_out_mahp`: Barz & Denzler ("Hierarchy-based Image Embeddings for Semantic
  Image Retrieval", WACV 2019; ``evaluate_retrieval.py`` / ``ClassHierarchy.hierarchical_precision``
  of cvjena/semantic-embeddings): every image of a set queries the rest of the same set.
- :func:`deephash_map`: DeepHash-pytorch's ``CalcTopMap`` (swuxyj/DeepHash-pytorch,
  ``utils/tools.py``): mAP@topk of +-1 codes with numpy's tie order.
- :func:`hierarchical_distance_at_k` and :func:`mistake_severity`: Bertinetto et al., "Making
  Better Mistakes: Leveraging Class Hierarchies with Deep Networks" (CVPR 2020), read for a
  ranking instead of a classifier's class scores.

Codes and labels follow :mod:`pml_shrewd.retrieval.metrics` (codes in ``[0, 1]``, binarised as
``code > 0.5`` for the Hamming ranking; one integer label per item) unless a function says
otherwise; ``ties`` is the same option as there.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .codes import binarize, check_code_range, to_numpy
from .metrics import (
    _CHUNK_ENTRIES,
    DEFAULT_K,
    _check_k,
    _check_ties,
    _distances,
    _prepare_inputs,
    _prepare_labels,
    _rank_queries,
    _Similarity,
    mahp_at_k,
    mean_average_precision,
)

__all__ = [
    "leave_one_out_mahp",
    "deephash_map",
    "hierarchical_distance_at_k",
    "mistake_severity",
    "topk_same_group_share",
]


# ----------------------------------------------------------------------------- Barz & Denzler


def leave_one_out_mahp(
    codes: Any,
    labels: Any,
    *,
    semantic_distance: Any,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ties: str = "index",
) -> float:
    """Barz & Denzler's protocol: each item of one set queries the rest of that set; mAHP@k.

    The protocol of their published CIFAR-100 mAHP@250 (0.8312 for ResNet-110w, 0.8621 for
    PyramidNet, continuous embeddings; Barz & Denzler, WACV 2019): every test image is a query,
    the database is the other test images (the query itself is removed from its ranking and
    from the ideal), ``HP@i = sum of the similarities 1 - d of the top i / the best possible
    sum`` and ``AHP@k = trapz(HP@1..HP@k, dx=1/k)`` per query (their
    ``hierarchical_precision(..., compute_ahp=k)``), averaged over all queries. ``k`` is clipped
    to ``len(codes) - 1``. Same as ``mahp_at_k(codes, codes, labels, labels,
    ref_includes_query=True, ...)``; their code ranks by squared L2 of the features with
    ``np.argsort`` (ties as numpy's sort leaves them), ours by ``distance`` with ``ties``.

    Example::

        provider = HierarchyDistance.from_file("cifar.parent-child.txt")  # their CIFAR-100 tree
        score = leave_one_out_mahp(test_z, test_y, semantic_distance=provider, k=250)
        spread = [leave_one_out_mahp(test_z, test_y, semantic_distance=provider, ties=t) for t in ("worst", "best")]
    """
    return mahp_at_k(
        codes,
        codes,
        labels,
        labels,
        semantic_distance=semantic_distance,
        k=k,
        distance=distance,
        ref_includes_query=True,
        ties=ties,
    )


# ----------------------------------------------------------------------------- DeepHash-pytorch


def _signed_codes(codes: Any, name: str) -> np.ndarray:
    arr = to_numpy(codes, name)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (num_items, num_bits) array, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if arr.size and arr.min() < 0:
        if not np.isin(arr, (-1.0, 1.0)).all():
            raise ValueError(
                f"{name} has negative values but is not a +-1 code: pass sign codes in {{-1, +1}} "
                "(DeepHash-pytorch's convention) or codes in [0, 1] (binarised as code > 0.5)"
            )
        return arr.astype(np.float32)
    check_code_range(arr, name)
    return (2.0 * binarize(arr) - 1.0).astype(np.float32)


def _label_matrix(labels: Any, n: int, name: str) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Integer labels (returned first) or a (n, C) multi-hot label matrix (returned second)."""
    arr = to_numpy(labels, name)
    if arr.ndim == 2 and arr.shape[1] != 1:
        if arr.shape[0] != n:
            raise ValueError(f"{name} has {arr.shape[0]} rows but there are {n} codes")
        return None, arr.astype(np.float32)
    return _prepare_labels(arr, n, name), None


def deephash_map(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    topk: int | None,
    ties: str = "numpy",
) -> float:
    """DeepHash-pytorch's ``CalcTopMap(rB, qB, retrievalL, queryL, topk)``: their mAP@topk.

    Transcribes swuxyj/DeepHash-pytorch ``utils/tools.py``: codes in ``{-1, +1}`` (float32, as
    their ``torch.sign`` of the network's output), ``hamm = 0.5 * (bits - qB @ rB.T)``, the
    database ranked by ``np.argsort(hamm)`` (numpy's default, unstable sort: their tie order,
    reproduced exactly with the same numpy on the same machine), relevant = the query shares at
    least one label with the item (``queryL @ retrievalL.T > 0``), ``AP = mean over the relevant
    items in the top topk of (their rank among those relevant items) / (their rank)``, and the
    mean is over **all** queries: a query with nothing relevant in its top k counts 0 (their
    ``continue`` skips it but ``topkmap / num_query`` divides by every query).

    ``query_codes`` / ``db_codes``: +-1 codes, or codes in ``[0, 1]`` (binarised as
    ``code > 0.5``, then ``2b - 1``). Labels: one integer per item (relevant = same label) or
    multi-hot ``(N, C)`` rows as theirs. ``topk``: e.g. 1000 (their CIFAR / NUS-WIDE tables; a
    ``topk`` past the database is the whole ranking) or ``None`` for mAP@all. ``ties="numpy"``
    is theirs; ``"index"``, ``"expected"``, ``"best"``, ``"worst"`` rank as
    :func:`~pml_shrewd.retrieval.metrics.mean_average_precision` (integer labels only; their AP
    is our ``AP@k`` with ``k=topk``, and the whole-ranking AP for ``topk=None``).

    Example::

        m1000 = deephash_map(test_z, db_z, test_y, db_y, topk=1000)   # their mAP@1000
        m_all = deephash_map(test_z, db_z, test_y, db_y, topk=None)   # mAP@all
        m_neutral = deephash_map(test_z, db_z, test_y, db_y, topk=1000, ties="expected")
    """
    if ties != "numpy":
        _check_ties(ties)
    if topk is not None:
        topk = _check_k(topk, "topk")
    qb = _signed_codes(query_codes, "query_codes")
    rb = _signed_codes(db_codes, "db_codes")
    if qb.shape[1] != rb.shape[1]:
        raise ValueError(f"query codes have {qb.shape[1]} bits but database codes {rb.shape[1]}")
    nq, n = qb.shape[0], rb.shape[0]
    if nq == 0 or n == 0:
        raise ValueError("deephash_map needs at least one query and one database item")
    ql, qmat = _label_matrix(query_labels, nq, "query_labels")
    dl, dmat = _label_matrix(db_labels, n, "db_labels")
    if (ql is None) != (dl is None):
        raise ValueError("query_labels and db_labels must both be integer labels or both multi-hot rows")
    if ties != "numpy":
        if ql is None:
            raise ValueError(f"ties={ties!r} needs integer labels (multi-hot labels: ties='numpy')")
        k = None if topk is None or topk >= n else topk
        qz, dz = (qb > 0).astype(np.float32), (rb > 0).astype(np.float32)
        return mean_average_precision(qz, dz, ql, dl, k=k, ties=ties)
    if ql is not None and qmat is None:
        classes = np.union1d(ql, dl)
        qmat = (ql[:, None] == classes[None, :]).astype(np.float32)
        dmat = (dl[:, None] == classes[None, :]).astype(np.float32)

    bits = rb.shape[1]
    # Their CalcHammingDist(qB[i], rB) per query; equal to this in float32 (+-1 products are exact).
    step = max(1, _CHUNK_ENTRIES // (4 * n))
    topkmap = 0.0
    for start in range(0, nq, step):
        hamm_rows = 0.5 * (bits - qb[start : start + step] @ rb.T)
        gnd_rows = (qmat[start : start + step] @ dmat.T) > 0
        for hamm, gnd in zip(hamm_rows, gnd_rows, strict=True):
            ind = np.argsort(hamm)  # numpy's default kind, one 1-D row at a time: their order
            tgnd = gnd[ind][:topk].astype(np.float32)
            tsum = int(np.sum(tgnd))
            if tsum == 0:
                continue
            count = np.linspace(1, tsum, tsum)
            tindex = np.asarray(np.where(tgnd == 1)) + 1.0
            topkmap = topkmap + np.mean(count / tindex)
    return float(topkmap / nq)


# ----------------------------------------------------------------------------- Making Better Mistakes


def _lca_scale(semantic_distance: Any, lca_height: bool) -> float:
    if not lca_height:
        return 1.0
    depth = getattr(semantic_distance, "depth", None)
    if depth is None:
        raise ValueError(
            "lca_height=True needs a hierarchy provider with a .depth (the tree height, e.g. "
            "HierarchyDistance); with another provider or a matrix the distances are reported as they are"
        )
    return float(depth)


def hierarchical_distance_at_k(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ties: str = "index",
    ref_includes_query: bool = False,
    lca_height: bool = False,
) -> float:
    """Making Better Mistakes' average hierarchical distance@k (Bertinetto et al., CVPR 2020).

    Mean over queries of the mean semantic distance ``d(y_q, y_r)`` between the query's class
    and the classes of its ``k`` nearest database items (their "hierarchical distance@k",
    there over a classifier's k most likely classes; here over the ranking). ``d`` is the
    provider's distance in ``[0, 1]`` (for :class:`~pml_shrewd.HierarchyDistance`,
    ``height(lca) / tree height``); ``lca_height=True`` multiplies by the provider's ``depth``,
    giving the LCA height in tree levels as Bertinetto et al. report it. Lower is better; 0 =
    only same-class items (or distance-0 classes) in the top k. ``k`` is clipped to the
    database; ``ties`` as in :func:`~pml_shrewd.retrieval.metrics.hp_at_k` (``"best"`` puts the
    most similar items first inside each tie group: the lowest hdist@k).

    Example::

        provider = HierarchyDistance.from_file("cifar.parent-child.txt")
        h5 = hierarchical_distance_at_k(qz, dbz, ql, dl, semantic_distance=provider, k=5, lca_height=True)
        h250 = hierarchical_distance_at_k(qz, dbz, ql, dl, semantic_distance=provider, k=250, ties="expected")
    """
    scale = _lca_scale(semantic_distance, lca_height)
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
    kk = res["hp_k"]
    return float(scale * np.mean(1.0 - res["gain_k"] / kk))


def mistake_severity(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    semantic_distance: Any,
    distance: str = "hamming",
    ties: str = "index",
    ref_includes_query: bool = False,
    lca_height: bool = False,
) -> float:
    """Making Better Mistakes' mistake severity (Bertinetto et al., CVPR 2020), for a ranking.

    Mean semantic distance ``d(y_q, y_top1)`` between the query's class and the class of its
    nearest database item, over the queries whose nearest item has another label (their
    "average mistake severity": the LCA height of the top-1 mistakes). ``lca_height`` as in
    :func:`hierarchical_distance_at_k`. Returns ``nan`` when no query's top-1 is wrong.

    Ties in the first place: ``"index"`` takes the lowest database index; ``"expected"`` takes a
    uniformly random item of the nearest tie group and returns the ratio of the expectations,
    ``sum_q E[d * wrong_q] / sum_q P(wrong_q)`` (the expectation of the ratio has no closed
    form); ``"best"`` / ``"worst"`` take, per query, the most / least similar item of that
    group (a same-label item first / last): per-query extremes, not bounds of the ratio.

    Example::

        sev = mistake_severity(qz, dbz, ql, dl, semantic_distance=provider, lca_height=True)
        sev_neutral = mistake_severity(qz, dbz, ql, dl, semantic_distance=provider, ties="expected")
        print(f"mistake severity {sev:.3f} LCA levels")
    """
    scale = _lca_scale(semantic_distance, lca_height)
    q, db, ql, dl = _prepare_inputs(
        query_codes, db_codes, query_labels, db_labels, distance, ties, ref_includes_query
    )
    nq, n = q.shape[0], db.shape[0]
    sim = _Similarity(semantic_distance, dl, ref_includes_query)
    num_cls = len(sim.db_unique)
    db_t = None if distance == "hamming" else torch.from_numpy(db)
    wrong_sum, sev_sum = 0.0, 0.0
    step = max(1, _CHUNK_ENTRIES // n)
    for start in range(0, nq, step):
        stop = min(nq, start + step)
        rows = np.arange(stop - start)
        d = _distances(q[start:stop], db, distance, db_t).astype(np.float64)
        if ref_includes_query:
            d[rows, rows + start] = np.inf
        first = d == d.min(axis=1, keepdims=True)  # the nearest tie group
        qlab = ql[start:stop]
        uq, uinv = np.unique(qlab, return_inverse=True)
        dist = (1.0 - sim.rows(uq))[uinv]  # (c, classes)
        own_idx = np.minimum(np.searchsorted(sim.db_unique, qlab), num_cls - 1)
        own = sim.db_unique[own_idx] == qlab  # the query's class is in the database
        other = np.ones((len(qlab), num_cls), dtype=bool)
        other[rows[own], own_idx[own]] = False  # classes that count as a mistake
        if ties == "index":
            top_cls = sim.db_index[np.argmax(first, axis=1)]
            wrong = other[rows, top_cls]
            wrong_sum += wrong.sum()
            sev_sum += dist[rows, top_cls][wrong].sum()
            continue
        hr, hc = np.nonzero(first)
        hist = np.bincount(hr * num_cls + sim.db_index[hc], minlength=len(qlab) * num_cls).reshape(
            -1, num_cls
        )
        m = hist.sum(axis=1)
        wrong_hist = np.where(other, hist, 0)
        if ties == "expected":
            wrong_sum += (wrong_hist.sum(axis=1) / m).sum()
            sev_sum += ((wrong_hist * dist).sum(axis=1) / m).sum()
        elif ties == "best":
            wrong = wrong_hist.sum(axis=1) == m  # no same-label item in the group
            present = np.where(hist > 0, dist, np.inf)
            wrong_sum += wrong.sum()
            sev_sum += present.min(axis=1)[wrong].sum()
        else:
            wrong = wrong_hist.sum(axis=1) > 0
            present = np.where(wrong_hist > 0, dist, -np.inf)
            wrong_sum += wrong.sum()
            sev_sum += present.max(axis=1)[wrong].sum()
    if wrong_sum == 0:
        return float("nan")
    return float(scale * sev_sum / wrong_sum)


# ----------------------------------------------------------------------------- where queries land


def topk_same_group_share(
    query_codes: Any,
    db_codes: Any,
    query_labels: Any,
    db_labels: Any,
    *,
    label_groups: Any,
    k: int = DEFAULT_K,
    distance: str = "hamming",
    ties: str = "index",
    ref_includes_query: bool = False,
) -> np.ndarray:
    """Per query, the share of its ``k`` nearest database items whose label is in the query's
    group (``label_groups[c]``: the group id of label ``c``, e.g. CIFAR-100's superclass): where
    the images of a class land, e.g. one never trained on (issue 17's unseen classes). The
    query's own class counts (it is in its group). ``k`` is clipped to the database;
    ``distance`` and ``ties`` as in :func:`~pml_shrewd.retrieval.metrics.hp_at_k`.

    Example::

        share = topk_same_group_share(qz, dbz, ql, dl, label_groups=superclass_of, k=250)
        print(share[np.isin(ql, unseen)].mean())
    """
    groups = np.asarray(label_groups)
    if groups.ndim != 1 or not np.issubdtype(groups.dtype, np.integer):
        raise ValueError(
            f"label_groups must be a 1-D integer array (a group id per label), got {groups.dtype}"
        )
    other_group = (groups[:, None] != groups[None, :]).astype(np.float64)  # distance 0 within a group, else 1
    res = _rank_queries(
        query_codes,
        db_codes,
        query_labels,
        db_labels,
        distance=distance,
        hp_k=k,
        semantic_distance=other_group,
        ref_includes_query=ref_includes_query,
        ties=ties,
    )
    return res["gain_k"] / res["hp_k"]
