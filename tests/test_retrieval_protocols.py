"""The anchors' protocols against transcriptions of their code and plain loops."""

from __future__ import annotations

import numpy as np
import pytest

from pml_shrewd import HierarchyDistance
from pml_shrewd.retrieval import (
    deephash_map,
    hierarchical_distance_at_k,
    leave_one_out_mahp,
    mahp_at_k,
    mean_average_precision,
    mistake_severity,
)

# ----------------------------------------------------------------------------- transcriptions


def barz_hierarchical_precision(retrieved, labels, lcs_similarity, ks, compute_ahp):
    """``ClassHierarchy.hierarchical_precision`` of cvjena/semantic-embeddings (commit 0d41774),
    the LCS_HEIGHT part, with ``compute_ahp=<int>``, ``ignore_qids=True``, ``all_ids=None``;
    ``retrieved``: query id -> ranked ids of the whole set, the query included (their
    ``pairwise_retrieval``)."""
    kmax = max(max(ks), compute_ahp)
    prec = {f"P@{k}": {} for k in ks}
    prec["AHP"] = {}
    best_lcs_cum = {}
    for qid, ret in retrieved.items():
        lbl = labels[qid]
        if lbl not in best_lcs_cum:
            lcs = [lcs_similarity(lbl, labels[r]) for r in ret]
            best_lcs_cum[lbl] = np.cumsum(sorted(lcs, reverse=True))
        else:
            lcs = [lcs_similarity(lbl, labels[r]) for r in ret[: kmax + 1]]
        cum_best_lcs = best_lcs_cum[lbl]
        try:
            qid_ind = ret.index(qid)
            if qid_ind < len(lcs):
                del lcs[qid_ind]
                cum_best_lcs = np.concatenate((cum_best_lcs[:qid_ind], cum_best_lcs[qid_ind + 1 :] - 1.0))
        except ValueError:
            pass
        for k in ks:
            prec[f"P@{k}"][qid] = sum(lcs[:k]) / cum_best_lcs[k - 1]
        prec["AHP"][qid] = np.trapezoid(
            np.cumsum(lcs[:compute_ahp]) / cum_best_lcs[:compute_ahp], dx=1.0 / compute_ahp
        )
    return {metric: sum(values.values()) / len(values) for metric, values in prec.items()}, prec


def CalcHammingDist(B1, B2):  # noqa: N802, N803 -- DeepHash-pytorch utils/tools.py, verbatim
    q = B2.shape[1]
    distH = 0.5 * (q - np.dot(B1, B2.transpose()))  # noqa: N806
    return distH


def CalcTopMap(rB, qB, retrievalL, queryL, topk):  # noqa: N802, N803 -- verbatim, without tqdm
    num_query = queryL.shape[0]
    topkmap = 0
    for iter in range(num_query):
        gnd = (np.dot(queryL[iter, :], retrievalL.transpose()) > 0).astype(np.float32)
        hamm = CalcHammingDist(qB[iter, :], rB)
        ind = np.argsort(hamm)
        gnd = gnd[ind]

        tgnd = gnd[0:topk]
        tsum = np.sum(tgnd).astype(int)
        if tsum == 0:
            continue
        count = np.linspace(1, tsum, tsum)

        tindex = np.asarray(np.where(tgnd == 1)) + 1.0
        topkmap_ = np.mean(count / (tindex))
        topkmap = topkmap + topkmap_
    topkmap = topkmap / num_query
    return topkmap


def hamming(a, b):
    return int(np.sum((np.asarray(a) > 0.5) != (np.asarray(b) > 0.5)))


def index_rankings(codes, self_included):
    """Per query, all items by (Hamming distance, index); the query itself kept or dropped."""
    return {
        i: sorted(
            (j for j in range(len(codes)) if self_included or j != i),
            key=lambda j: (hamming(codes[i], codes[j]), j),
        )
        for i in range(len(codes))
    }


# ----------------------------------------------------------------------------- Barz & Denzler

# root -> A -> {a1, a2}; root -> b1. Heights: leaves 0, A 1, root 2, so
# d(a1, a2) = 1/2, d(a, b1) = 1: similarities 1 (same class), 0.5 (a1-a2), 0 (a-b1).
TREE = HierarchyDistance([("root", "A"), ("A", "a1"), ("A", "a2"), ("root", "b1")], ["a1", "a2", "b1"])
CODES = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 1], [1, 1, 1], [1, 1, 0]], dtype=np.float32)
LABELS = np.array([0, 0, 1, 2, 2])
# Hamming: d01=1 d02=2 d03=3 d04=2 d12=1 d13=2 d14=3 d23=1 d24=2 d34=1. With k = 3 of the 4 others:
#   q0 (a1): 1, 2, 4 (2 and 4 tie at 2) -> gains 1, .5, 0; ideal 1, 1.5, 1.5   -> HP 1, 1, 1
#   q1 (a1): 0, 2, 3 (0 and 2 tie at 1) -> gains 1, .5, 0; ideal 1, 1.5, 1.5   -> HP 1, 1, 1
#   q2 (a2): 1, 3, 0 (1, 3 tie at 1)    -> gains .5, 0, .5; ideal .5, 1, 1     -> HP 1, .5, 1
#   q3 (b1): 2, 4, 1 (2, 4 tie at 1)    -> gains 0, 1, 0; ideal 1, 1, 1        -> HP 0, 1, 1
#   q4 (b1): 3, 0, 2 (0, 2 tie at 2)    -> gains 1, 0, 0; ideal 1, 1, 1        -> HP 1, 1, 1
# AHP@3 = trapz(HP, dx=1/3): 2/3, 2/3, 1/2, 1/2, 2/3 -> mAHP@3 = 3/5.
HAND_HP = np.array([[1, 1, 1], [1, 1, 1], [1, 0.5, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float64)
HAND_MAHP = 0.6
# ties="expected" (a tie group's places get its mean gain):
#   q0: 1, .25, .25 -> HP 1, 5/6, 1 -> 11/18;  q1: .75, .75, 0 -> HP .75, 1, 1 -> 5/8
#   q2: .25, .25, .25 -> HP .5, .5, .75 -> 3/8;  q3: .5, .5, 0 -> HP .5, 1, 1 -> 7/12;  q4: 2/3
HAND_MAHP_EXPECTED = (11 / 18 + 5 / 8 + 3 / 8 + 7 / 12 + 2 / 3) / 5


DMAT = np.array([[0, 0.5, 1], [0.5, 0, 1], [1, 1, 0]])  # TREE's distances (checked below)


def lcs_sim(a, b):
    """Their LCS_HEIGHT similarity ``1 - height(lcs) / max height``."""
    return 1.0 - DMAT[a][b]


def test_tree_of_the_hand_example():
    import torch

    d = TREE(torch.arange(3), torch.arange(3)).numpy()
    np.testing.assert_allclose(d, DMAT)


def test_leave_one_out_hand_example():
    assert leave_one_out_mahp(CODES, LABELS, semantic_distance=TREE, k=3) == pytest.approx(
        HAND_MAHP, abs=1e-12
    )
    got = leave_one_out_mahp(CODES, LABELS, semantic_distance=TREE, k=3, ties="expected")
    assert got == pytest.approx(HAND_MAHP_EXPECTED, abs=1e-12)
    # Barz & Denzler's formulas on the same rankings (the query first: distance 0, unique code)
    perf, per_query = barz_hierarchical_precision(
        index_rankings(CODES, self_included=True), dict(enumerate(LABELS.tolist())), lcs_sim, [1, 2, 3], 3
    )
    for k in (1, 2, 3):
        np.testing.assert_allclose([per_query[f"P@{k}"][i] for i in range(5)], HAND_HP[:, k - 1], atol=1e-12)
    assert perf["AHP"] == pytest.approx(HAND_MAHP, abs=1e-12)
    # the same as mahp_at_k with the set as its own database
    same = mahp_at_k(CODES, CODES, LABELS, LABELS, semantic_distance=TREE, k=3, ref_includes_query=True)
    assert same == leave_one_out_mahp(CODES, LABELS, semantic_distance=TREE, k=3)


@pytest.mark.parametrize("seed", range(3))
def test_leave_one_out_against_barz_transcription(seed):
    rng = np.random.default_rng(seed)
    n, bits = 40, 6
    # distinct codes (the query alone at distance 0, as with their float features) but many ties
    picks = rng.choice(2**bits, n, replace=False)
    codes = ((picks[:, None] >> np.arange(bits)) & 1).astype(np.float32)
    labels = np.concatenate([np.arange(3), np.arange(3), rng.integers(0, 3, n - 6)])  # every class >= 2
    rng.shuffle(labels)
    for k in (1, 7, 25):
        perf, _ = barz_hierarchical_precision(
            index_rankings(codes, True), dict(enumerate(labels.tolist())), lcs_sim, [k], k
        )
        ours = leave_one_out_mahp(codes, labels, semantic_distance=TREE, k=k)
        assert ours == pytest.approx(perf["AHP"], rel=1e-12, abs=1e-12)


def test_leave_one_out_spread():
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 2, (60, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 60)
    vals = {
        t: leave_one_out_mahp(codes, labels, semantic_distance=TREE, k=20, ties=t)
        for t in ("worst", "expected", "best")
    }
    assert vals["worst"] < vals["expected"] < vals["best"]


# ----------------------------------------------------------------------------- DeepHash-pytorch


def signed(bits01):
    return (2.0 * bits01 - 1.0).astype(np.float32)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("topk", [1000, None, 5, 37])
def test_deephash_map_reproduces_calc_top_map(seed, topk):
    rng = np.random.default_rng(seed)
    n, nq, bits, classes = 300, 25, 5, 4  # 6 distances for 300 items: huge tie groups
    rb = signed(rng.integers(0, 2, (n, bits)))
    qb = signed(rng.integers(0, 2, (nq, bits)))
    dl, ql = rng.integers(0, classes, n), rng.integers(0, classes, nq)
    onehot = np.eye(classes, dtype=np.float32)
    want = CalcTopMap(rb, qb, onehot[dl], onehot[ql], topk)
    assert deephash_map(qb, rb, ql, dl, topk=topk) == pytest.approx(want, rel=1e-13, abs=1e-15)
    # the same with one-hot rows and with 0/1 codes
    assert deephash_map(qb, rb, onehot[ql], onehot[dl], topk=topk) == pytest.approx(
        want, rel=1e-13, abs=1e-15
    )
    assert deephash_map((qb > 0) * 1.0, (rb > 0) * 1.0, ql, dl, topk=topk) == pytest.approx(
        want, rel=1e-13, abs=1e-15
    )


def test_deephash_map_multi_hot_and_empty_queries():
    rng = np.random.default_rng(4)
    n, nq, bits, classes = 120, 15, 6, 5
    rb, qb = signed(rng.integers(0, 2, (n, bits))), signed(rng.integers(0, 2, (nq, bits)))
    rl = (rng.random((n, classes)) < 0.3).astype(np.float32)
    qlm = (rng.random((nq, classes)) < 0.3).astype(np.float32)
    qlm[0] = 0  # a query with no label: nothing relevant, counts 0 in the mean over all queries
    for topk in (10, None):
        want = CalcTopMap(rb, qb, rl, qlm, topk)
        assert deephash_map(qb, rb, qlm, rl, topk=topk) == pytest.approx(want, rel=1e-13, abs=1e-15)


def test_deephash_map_other_ties_are_our_map():
    rng = np.random.default_rng(5)
    rb, qb = signed(rng.integers(0, 2, (80, 4))), signed(rng.integers(0, 2, (10, 4)))
    dl, ql = rng.integers(0, 3, 80), rng.integers(0, 3, 10)
    r01, q01 = (rb > 0).astype(np.float32), (qb > 0).astype(np.float32)
    for ties in ("index", "expected", "best", "worst"):
        assert deephash_map(qb, rb, ql, dl, topk=20, ties=ties) == mean_average_precision(
            q01, r01, ql, dl, k=20, ties=ties
        )
        assert deephash_map(qb, rb, ql, dl, topk=None, ties=ties) == mean_average_precision(
            q01, r01, ql, dl, ties=ties
        )
        # AP over a top k past the database is the whole-ranking AP
        assert deephash_map(qb, rb, ql, dl, topk=1000, ties=ties) == mean_average_precision(
            q01, r01, ql, dl, ties=ties
        )
    lo = deephash_map(qb, rb, ql, dl, topk=None, ties="worst")
    hi = deephash_map(qb, rb, ql, dl, topk=None, ties="best")
    assert lo <= deephash_map(qb, rb, ql, dl, topk=None) <= hi


def test_deephash_map_refuses_bad_codes():
    with pytest.raises(ValueError, match="not a \\+-1 code"):
        deephash_map(np.array([[-0.5, 1.0]]), np.array([[1.0, 1.0]]), [0], [0], topk=None)


# ----------------------------------------------------------------------------- Making Better Mistakes


def mbm_loops(qc, dc, ql, dl, dmat, k, self_excluded=False):
    """hdist@k and mistake severity by explicit loops over (distance, index) rankings."""
    hd, sev = [], []
    for i, q in enumerate(qc):
        order = sorted(
            (j for j in range(len(dc)) if not (self_excluded and j == i)),
            key=lambda j: (hamming(q, dc[j]), j),
        )
        top = order[: min(k, len(order))]
        hd.append(np.mean([dmat[ql[i]][dl[j]] for j in top]))
        if dl[order[0]] != ql[i]:
            sev.append(dmat[ql[i]][dl[order[0]]])
    return float(np.mean(hd)), (float(np.mean(sev)) if sev else float("nan"))


def mbm_tie_loops(qc, dc, ql, dl, dmat):
    """Mistake severity over the nearest tie group: expected (ratio of expectations), best, worst."""
    e_num = e_den = 0.0
    b_sev, w_sev = [], []
    for i, q in enumerate(qc):
        dists = [hamming(q, d) for d in dc]
        group = [j for j in range(len(dc)) if dists[j] == min(dists)]
        wrong = [j for j in group if dl[j] != ql[i]]
        e_den += len(wrong) / len(group)
        e_num += sum(dmat[ql[i]][dl[j]] for j in wrong) / len(group)
        if len(wrong) == len(group):
            b_sev.append(min(dmat[ql[i]][dl[j]] for j in group))
        if wrong:
            w_sev.append(max(dmat[ql[i]][dl[j]] for j in wrong))
    return e_num / e_den, float(np.mean(b_sev)), float(np.mean(w_sev))


@pytest.mark.parametrize("seed", range(4))
def test_making_better_mistakes_against_loops(seed):
    rng = np.random.default_rng(seed)
    n, nq, classes = 50, 12, 3
    dc = rng.integers(0, 2, (n, 4)).astype(np.float32)
    qc = rng.integers(0, 2, (nq, 4)).astype(np.float32)
    dl, ql = rng.integers(0, classes, n), rng.integers(0, classes, nq)
    dmat = DMAT
    for k in (1, 5, 50):
        hd, sev = mbm_loops(qc, dc, ql, dl, dmat, k)
        assert hierarchical_distance_at_k(qc, dc, ql, dl, semantic_distance=TREE, k=k) == pytest.approx(
            hd, rel=1e-12
        )
        # in tree levels: times the tree height (2)
        got = hierarchical_distance_at_k(qc, dc, ql, dl, semantic_distance=TREE, k=k, lca_height=True)
        assert got == pytest.approx(2 * hd, rel=1e-12)
    assert mistake_severity(qc, dc, ql, dl, semantic_distance=TREE) == pytest.approx(sev, rel=1e-12)
    assert mistake_severity(qc, dc, ql, dl, semantic_distance=TREE, lca_height=True) == pytest.approx(
        2 * sev, rel=1e-12
    )
    e, b, w = mbm_tie_loops(qc, dc, ql, dl, dmat)
    assert mistake_severity(qc, dc, ql, dl, semantic_distance=dmat, ties="expected") == pytest.approx(
        e, rel=1e-12
    )
    assert mistake_severity(qc, dc, ql, dl, semantic_distance=dmat, ties="best") == pytest.approx(
        b, rel=1e-12
    )
    assert mistake_severity(qc, dc, ql, dl, semantic_distance=dmat, ties="worst") == pytest.approx(
        w, rel=1e-12
    )
    # hdist@k with ties: best <= expected <= worst (lower is better)
    h = {
        t: hierarchical_distance_at_k(qc, dc, ql, dl, semantic_distance=TREE, k=5, ties=t)
        for t in ("best", "expected", "worst")
    }
    assert h["best"] <= h["expected"] <= h["worst"]


def test_making_better_mistakes_leave_one_out():
    hd, sev = mbm_loops(CODES, CODES, LABELS, LABELS, DMAT, 2, self_excluded=True)
    kw = {"semantic_distance": TREE, "ref_includes_query": True}
    assert hierarchical_distance_at_k(CODES, CODES, LABELS, LABELS, k=2, **kw) == pytest.approx(hd, rel=1e-12)
    assert mistake_severity(CODES, CODES, LABELS, LABELS, **kw) == pytest.approx(sev, rel=1e-12)
    # hand check: top-1 of q0..q4 = 1, 0, 1, 2, 3 -> mistakes q2 (a2 -> a1: 0.5) and q3 (b1 -> a2: 1)
    assert sev == pytest.approx(0.75)


def severity_loop(qc, dc, ql, dl, dmat, distance, self_excluded=False):
    """Mistake severity by a loop over queries: the nearest item by ``distance`` (lowest index
    first), the mean ``dmat[query class][its class]`` over queries whose nearest has another label."""
    sev = []
    for i, q in enumerate(np.asarray(qc, dtype=np.float64)):
        dists = []
        for j, r in enumerate(np.asarray(dc, dtype=np.float64)):
            if self_excluded and j == i:
                dists.append(np.inf)
            elif distance == "cosine":
                dists.append(1.0 - q @ r / (np.linalg.norm(q) * np.linalg.norm(r)))
            elif distance == "l2":
                dists.append(np.sqrt(np.sum((q - r) ** 2)))
            else:
                dists.append(np.sum(np.abs(q - r)))
        nearest = int(np.argmin(dists))  # the first of equal minima: the lowest index
        if dl[nearest] != ql[i]:
            sev.append(dmat[ql[i]][dl[nearest]])
    return float(np.mean(sev)) if sev else float("nan")


@pytest.mark.parametrize("distance", ["cosine", "l2", "l1"])
@pytest.mark.parametrize("seed", range(3))
def test_mistake_severity_continuous_distances_against_loop(distance, seed):
    rng = np.random.default_rng(seed)
    n, nq, classes = 40, 15, 4
    dc = rng.normal(size=(n, 6)).astype(np.float32)
    qc = rng.normal(size=(nq, 6)).astype(np.float32)
    dl, ql = rng.integers(0, classes, n), rng.integers(0, classes, nq)
    dmat = rng.uniform(0.1, 1.0, (classes, classes))
    dmat = (dmat + dmat.T) / 2
    np.fill_diagonal(dmat, 0.0)
    want = severity_loop(qc, dc, ql, dl, dmat, distance)
    # Random real codes have no tied distances: every tie rule gives the same figure.
    for ties in ("index", "expected", "best", "worst"):
        got = mistake_severity(qc, dc, ql, dl, semantic_distance=dmat, distance=distance, ties=ties)
        assert got == pytest.approx(want, rel=1e-12), ties
    # Leave-one-out: the queries are the first database items, each left out of its own ranking.
    ref, ref_l = np.concatenate([qc, dc]), np.concatenate([ql, dl])
    want = severity_loop(qc, ref, ql, ref_l, dmat, distance, self_excluded=True)
    got = mistake_severity(
        qc, ref, ql, ref_l, semantic_distance=dmat, distance=distance, ref_includes_query=True
    )
    assert got == pytest.approx(want, rel=1e-12)


def test_lca_height_needs_a_tree():
    with pytest.raises(ValueError, match="lca_height=True"):
        mistake_severity(CODES, CODES, LABELS, LABELS, semantic_distance=np.zeros((3, 3)), lca_height=True)
