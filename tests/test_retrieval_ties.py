"""Tie-aware metrics (``ties=``) against a brute force over every order inside tied groups."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from pml_shrewd.retrieval import (
    evaluate_codes,
    hp_at_k,
    mahp_at_k,
    mean_average_precision,
    precision_at_k,
)

# ----------------------------------------------------------------------------- reference


def ref_dist(a, b, distance):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if distance == "hamming":
        return float(np.sum((a > 0.5) != (b > 0.5)))
    return float(np.abs(a - b).sum())


def all_orders(q, dc, distance, exclude=None):
    """Every ranking of the database that sorts by distance (each order inside each tie group)."""
    items = [j for j in range(len(dc)) if j != exclude]
    dists = {j: ref_dist(q, dc[j], distance) for j in items}
    groups = [[j for j in items if dists[j] == v] for v in sorted(set(dists.values()))]
    for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
        yield [j for p in perms for j in p], groups


def scores(ranking, rel, sims, k):
    """Whole AP, AP@k (divided by the hits in the top k), P@k and the HP@1..k curve of one ranking."""
    k = min(k, len(ranking))
    hits, total, total_k = 0, 0.0, 0.0
    for i, j in enumerate(ranking, start=1):
        if rel[j]:
            hits += 1
            total += hits / i
            if i <= k:
                total_k += hits / i
        if i == k:
            hits_k = hits
    n_rel = sum(rel[j] for j in ranking)
    gains = [sims[j] for j in ranking]
    best = sorted(gains, reverse=True)
    hp = []
    for t in range(1, k + 1):
        den = sum(best[:t])
        hp.append(sum(gains[:t]) / den if den > 0 else 0.0)
    return {
        "ap": total / n_rel if n_rel else 0.0,
        "apk": total_k / hits_k if hits_k else 0.0,
        "p": hits_k / k,
        "hp": np.array(hp),
    }


def ahp(curve):
    return float(np.trapezoid(curve, dx=1.0 / len(curve)))


def brute(qc, dc, ql, dl, dmat, k, distance="hamming", self_excluded=False):
    """Per query: the index-order scores, the mean over all tie orders, and the min / max."""
    out = []
    for i, q in enumerate(qc):
        rel = {j: int(dl[j] == ql[i]) for j in range(len(dc))}
        sims = {j: 1.0 - dmat[ql[i]][dl[j]] for j in range(len(dc))}
        runs = []
        best_order = worst_order = None
        for ranking, groups in all_orders(q, dc, distance, i if self_excluded else None):
            runs.append(scores(ranking, rel, sims, k))
            if best_order is None:
                # relevant items first / last inside each group (order among equals irrelevant)
                best_order = [j for g in groups for j in sorted(g, key=lambda j: -rel[j])]
                worst_order = [j for g in groups for j in sorted(g, key=lambda j: rel[j])]
        index_order = sorted(
            (j for j in range(len(dc)) if not (self_excluded and j == i)),
            key=lambda j: (ref_dist(q, dc[j], distance), j),
        )
        res = {"index": scores(index_order, rel, sims, k)}
        res["expected"] = {key: np.mean([r[key] for r in runs], axis=0) for key in runs[0]}
        res["max"] = {key: np.max([r[key] for r in runs], axis=0) for key in runs[0]}
        res["min"] = {key: np.min([r[key] for r in runs], axis=0) for key in runs[0]}
        res["best_apk"] = scores(best_order, rel, sims, k)["apk"]
        res["worst_apk"] = scores(worst_order, rel, sims, k)["apk"]
        res["n_orders"] = len(runs)
        out.append(res)
    return out


def mean_of(per_query, mode, key):
    return np.mean([r[mode][key] for r in per_query], axis=0)


def random_case(seed, nq=4, n=7, bits=3, classes=3, distance="hamming"):
    rng = np.random.default_rng(seed)
    if distance == "hamming":
        dc = rng.integers(0, 2, (n, bits)).astype(np.float32)
        qc = rng.integers(0, 2, (nq, bits)).astype(np.float32)
    else:  # values exact in float32 sums, so equal sums are exact ties
        vals = np.array([0.0, 0.25, 0.5, 1.0], dtype=np.float32)
        dc = vals[rng.integers(0, 4, (n, bits))]
        qc = vals[rng.integers(0, 4, (nq, bits))]
    dl = rng.integers(0, classes, n)
    ql = rng.integers(0, classes, nq)
    a = rng.uniform(0.1, 1.0, (classes, classes))
    dmat = np.triu(a, 1) + np.triu(a, 1).T
    return qc, dc, ql, dl, dmat


def ours(qc, dc, ql, dl, dmat, k, ties, distance="hamming", ref=False):
    kw = {"distance": distance, "ties": ties, "ref_includes_query": ref}
    return {
        "ap": mean_average_precision(qc, dc, ql, dl, **kw),
        "apk": mean_average_precision(qc, dc, ql, dl, k=k, **kw),
        "p": precision_at_k(qc, dc, ql, dl, k=k, **kw),
        "hp": hp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=k, **kw),
        "mahp": mahp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=k, **kw),
    }


# ----------------------------------------------------------------------------- tests

CASES = [
    (seed, k, distance)
    for seed in range(6)
    for k, distance in ((1, "hamming"), (3, "hamming"), (5, "hamming"), (3, "l1"))
]


@pytest.mark.parametrize("seed,k,distance", CASES)
def test_ties_against_all_orders(seed, k, distance):
    qc, dc, ql, dl, dmat = random_case(seed, distance=distance)
    ref = brute(qc, dc, ql, dl, dmat, k, distance)
    assert max(r["n_orders"] for r in ref) > 1  # the case has ties
    for ties in ("index", "expected"):
        got = ours(qc, dc, ql, dl, dmat, k, ties, distance)
        for key in ("ap", "apk", "p", "hp"):
            np.testing.assert_allclose(
                got[key], mean_of(ref, ties, key), rtol=1e-9, atol=1e-12, err_msg=f"{ties} {key}"
            )
        # mAHP is linear in the HP curve: the mean of the per-order areas
        want = np.mean([ahp(r[ties]["hp"]) for r in ref])
        assert got["mahp"] == pytest.approx(want, rel=1e-9, abs=1e-12)
    # best / worst: the maximum / minimum over all orders, per query, of AP, P@k and every HP@i
    for ties, bound in (("best", "max"), ("worst", "min")):
        got = ours(qc, dc, ql, dl, dmat, k, ties, distance)
        for key in ("ap", "p", "hp"):
            np.testing.assert_allclose(
                got[key], mean_of(ref, bound, key), rtol=1e-9, atol=1e-12, err_msg=f"{ties} {key}"
            )
        # AP@k (divided by the hits in the top k) is not monotone in the order: the value of the
        # relevant-first / -last order, not a bound
        want = np.mean([r[f"{ties}_apk"] for r in ref])
        assert got["apk"] == pytest.approx(want, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ties_leave_one_out_against_all_orders(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = 7, 4
    dc = rng.integers(0, 2, (n, 3)).astype(np.float32)
    dl = rng.integers(0, 3, n)
    _, _, _, _, dmat = random_case(seed)
    ref = brute(dc, dc, dl, dl, dmat, k, self_excluded=True)
    for ties in ("index", "expected"):
        got = ours(dc, dc, dl, dl, dmat, k, ties, ref=True)
        for key in ("ap", "apk", "p", "hp"):
            np.testing.assert_allclose(got[key], mean_of(ref, ties, key), rtol=1e-9, atol=1e-12)
    for ties, bound in (("best", "max"), ("worst", "min")):
        got = ours(dc, dc, dl, dl, dmat, k, ties, ref=True)
        for key in ("ap", "p", "hp"):
            np.testing.assert_allclose(got[key], mean_of(ref, bound, key), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_bounds_order_on_larger_input(seed):
    rng = np.random.default_rng(seed)
    n, nq, k = 400, 30, 50
    dc = rng.integers(0, 2, (n, 6)).astype(np.float32)  # 7 distances: big tie groups
    qc = rng.integers(0, 2, (nq, 6)).astype(np.float32)
    dl, ql = rng.integers(0, 5, n), rng.integers(0, 5, nq)
    a = rng.uniform(0.2, 1.0, (5, 5))
    dmat = np.triu(a, 1) + np.triu(a, 1).T
    res = {t: ours(qc, dc, ql, dl, dmat, k, t) for t in ("index", "expected", "best", "worst")}
    for key in ("ap", "p", "mahp"):
        lo, hi = res["worst"][key], res["best"][key]
        assert lo - 1e-12 <= res["expected"][key] <= hi + 1e-12
        assert lo - 1e-12 <= res["index"][key] <= hi + 1e-12
        assert lo < hi  # the ties are real
    assert np.all(res["worst"]["hp"] <= res["expected"]["hp"] + 1e-12)
    assert np.all(res["expected"]["hp"] <= res["best"]["hp"] + 1e-12)


def test_index_is_the_default_and_unchanged():
    qc, dc, ql, dl, dmat = random_case(3, nq=20, n=60, bits=4)
    default = {
        "ap": mean_average_precision(qc, dc, ql, dl),
        "apk": mean_average_precision(qc, dc, ql, dl, k=5),
        "p": precision_at_k(qc, dc, ql, dl, k=5),
        "hp": hp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=5),
        "mahp": mahp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=5),
    }
    index = ours(qc, dc, ql, dl, dmat, 5, "index")
    for key, value in default.items():
        np.testing.assert_array_equal(index[key], value)  # bit-identical: the same code path
    ref = brute(qc[:3], dc[:8], ql[:3], dl[:8], dmat, 3)  # the index order of the brute force
    got = ours(qc[:3], dc[:8], ql[:3], dl[:8], dmat, 3, "index")
    for key in ("ap", "apk", "p", "hp"):
        np.testing.assert_allclose(got[key], mean_of(ref, "index", key), rtol=1e-12)


def test_evaluate_codes_ties():
    qc, dc, ql, dl, dmat = random_case(5, nq=5, n=7, bits=3)
    ref = brute(qc, dc, ql, dl, dmat, 3)
    ref_l1 = brute(qc, dc, ql, dl, dmat, 3, "l1")
    m = evaluate_codes(qc, dc, ql, dl, semantic_distance=dmat, k=3, ties="expected", return_curves=True)
    assert m["mAP"] == pytest.approx(mean_of(ref, "expected", "ap"), rel=1e-9)
    assert m["mAP@k"] == pytest.approx(mean_of(ref, "expected", "apk"), rel=1e-9)
    assert m["P@k"] == pytest.approx(mean_of(ref, "expected", "p"), rel=1e-9)
    np.testing.assert_allclose(m["hp_curve"], mean_of(ref, "expected", "hp"), rtol=1e-9)
    assert m["mAP_continuous"] == pytest.approx(mean_of(ref_l1, "expected", "ap"), rel=1e-9)
    default = evaluate_codes(qc, dc, ql, dl, semantic_distance=dmat, k=3)
    assert default == evaluate_codes(qc, dc, ql, dl, semantic_distance=dmat, k=3, ties="index")
    best = evaluate_codes(qc, dc, ql, dl, semantic_distance=dmat, k=3, ties="best")
    worst = evaluate_codes(qc, dc, ql, dl, semantic_distance=dmat, k=3, ties="worst")
    for key in ("mAP", "P@k", "mAHP@k", "mAP_continuous", "mAHP@k_continuous"):
        assert worst[key] - 1e-12 <= m[key] <= best[key] + 1e-12
    # the whole-ranking sort of evaluate_codes (rows sorted in place) against the brute force
    for res, bound in ((best, "max"), (worst, "min")):
        assert res["mAP"] == pytest.approx(mean_of(ref, bound, "ap"), rel=1e-9)
        assert res["P@k"] == pytest.approx(mean_of(ref, bound, "p"), rel=1e-9)
        assert res["mAHP@k"] == pytest.approx(np.mean([ahp(r[bound]["hp"]) for r in ref]), rel=1e-9)


def test_ties_chunked_and_threaded_agree():
    from pml_shrewd.retrieval.metrics import _rank_queries

    qc, dc, ql, dl, dmat = random_case(7, nq=25, n=50, bits=4)
    kw = dict(full_ap=True, ap_ks=(7,), p_ks=(7,), hp_k=7, semantic_distance=dmat, ties="expected")
    one = _rank_queries(qc, dc, ql, dl, chunk_size=25, num_threads=1, **kw)
    many = _rank_queries(qc, dc, ql, dl, chunk_size=3, num_threads=2, **kw)
    np.testing.assert_allclose(one["ap"], many["ap"], rtol=1e-12)
    np.testing.assert_allclose(one["ap_k"][7], many["ap_k"][7], rtol=1e-12)
    np.testing.assert_allclose(one["hp"], many["hp"], rtol=1e-12)


def test_ties_refused():
    qc, dc, ql, dl, _ = random_case(0)
    with pytest.raises(ValueError, match="ties must be one of"):
        mean_average_precision(qc, dc, ql, dl, ties="random")
