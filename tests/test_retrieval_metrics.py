"""Retrieval metrics against a slow, obviously-correct reference (explicit sorts and loops)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pml_shrewd.retrieval import (
    binarize,
    bit_balance,
    evaluate_codes,
    hp_at_k,
    mahp_at_k,
    mean_average_precision,
    pack_codes,
    precision_at_k,
    unpack_codes,
)
from pml_shrewd.semantic_distances.base import SemanticDistance

# ----------------------------------------------------------------------------- reference


def ref_distance(a, b, distance):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if distance == "hamming":
        return float(sum(int(x != y) for x, y in zip(a, b, strict=True)))
    if distance == "l1":
        return float(sum(abs(x - y) for x, y in zip(a, b, strict=True)))
    return float(np.sqrt(sum((x - y) ** 2 for x, y in zip(a, b, strict=True))))


def ref_rankings(qc, dc, distance, self_excluded=False):
    """For every query, database indices sorted by (distance, index), own item removed if asked."""
    out = []
    for i, q in enumerate(qc):
        items = [
            (ref_distance(q, d, distance), j) for j, d in enumerate(dc) if not (self_excluded and j == i)
        ]
        out.append([j for _, j in sorted(items)])
    return out


def ref_ap(ranking, rel, k=None):
    if k is not None:
        ranking = ranking[:k]
    hits, total = 0, 0.0
    for i, j in enumerate(ranking, start=1):
        if rel[j]:
            hits += 1
            total += hits / i
    denom = hits if k is not None else sum(rel[j] for j in ranking)
    return total / denom if denom else 0.0


def ref_metrics(qc, dc, ql, dl, distance, k=None, pk=None, dmat=None, hpk=None, self_excluded=False):
    rankings = ref_rankings(qc, dc, distance, self_excluded)
    aps, pks, hps = [], [], []
    for i, ranking in enumerate(rankings):
        rel = {j: int(dl[j] == ql[i]) for j in ranking}
        aps.append(ref_ap(ranking, rel, k))
        if pk is not None:
            kk = min(pk, len(ranking))
            pks.append(sum(rel[j] for j in ranking[:kk]) / kk)
        if hpk is not None:
            sims = [1.0 - dmat[ql[i]][dl[j]] for j in ranking]
            best = sorted(sims, reverse=True)
            kk = min(hpk, len(ranking))
            curve = []
            for t in range(1, kk + 1):
                num, den = sum(sims[:t]), sum(best[:t])
                curve.append(num / den if den > 0 else 0.0)
            hps.append(curve)
    res = {"map": float(np.mean(aps))}
    if pk is not None:
        res["p"] = float(np.mean(pks))
    if hpk is not None:
        curves = np.array(hps)
        kk = curves.shape[1]
        areas = [sum((c[t] + c[t + 1]) / 2 / kk for t in range(kk - 1)) for c in curves]
        res["curve"] = curves.mean(axis=0)
        res["mahp"] = float(np.mean(areas))
    return res


def random_tree_distances(rng, num_classes, depth=3, branching=3):
    """Random hierarchy: each class gets a random leaf path; d = height(lcs) / depth."""
    paths = [tuple(rng.integers(0, branching, depth)) for _ in range(num_classes)]
    d = np.zeros((num_classes, num_classes))
    for a in range(num_classes):
        for b in range(num_classes):
            if a == b:
                continue
            common = 0
            while common < depth and paths[a][common] == paths[b][common]:
                common += 1
            d[a, b] = (depth - common) / depth if common < depth else 1.0 / depth
    return d


class MatrixProvider(SemanticDistance):
    """Tiny provider over a fixed matrix, to exercise the provider path."""

    def __init__(self, matrix):
        self.m = torch.as_tensor(matrix, dtype=torch.float32)
        self.num_ids = self.m.shape[0]

    def pairwise(self, ids_a, ids_b):
        return self.m[ids_a][:, ids_b]


def make_data(seed, nq=23, nd=61, bits=5, classes=6, absent=True):
    rng = np.random.default_rng(seed)
    qb = rng.integers(0, 2, (nq, bits)).astype(np.uint8)
    db = rng.integers(0, 2, (nd, bits)).astype(np.uint8)
    ql = rng.integers(0, classes, nq)
    dl = rng.integers(0, classes - 1 if absent else classes, nd)  # last class absent from db
    if absent:
        ql[0] = classes - 1
    return rng, qb, db, ql, dl


# ----------------------------------------------------------------------------- metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("k", [None, 1, 7, 40, 500])
def test_map_matches_reference_with_ties_and_absent_classes(seed, k):
    _, qb, db, ql, dl = make_data(seed)
    ref = ref_metrics(qb, db, ql, dl, "hamming", k=k)["map"]
    got = mean_average_precision(qb, db, ql, dl, k=k)
    assert got == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("k", [1, 5, 30, 100])
def test_precision_at_k_matches_reference(seed, k):
    _, qb, db, ql, dl = make_data(seed)
    ref = ref_metrics(qb, db, ql, dl, "hamming", pk=k)["p"]
    assert precision_at_k(torch.from_numpy(qb), db, ql, torch.from_numpy(dl), k=k) == pytest.approx(ref)


@pytest.mark.parametrize("seed", [5, 6, 7])
@pytest.mark.parametrize("use_provider", [False, True])
def test_hp_curve_and_mahp_match_reference(seed, use_provider):
    rng, qb, db, ql, dl = make_data(seed, classes=7)
    dmat = random_tree_distances(rng, 7)
    sd = MatrixProvider(dmat) if use_provider else dmat
    for k in (1, 9, 61, 250):
        ref = ref_metrics(qb, db, ql, dl, "hamming", dmat=dmat, hpk=k)
        curve = hp_at_k(qb, db, ql, dl, semantic_distance=sd, k=k)
        np.testing.assert_allclose(curve, ref["curve"], atol=1e-6)
        assert mahp_at_k(qb, db, ql, dl, semantic_distance=sd, k=k) == pytest.approx(ref["mahp"], abs=1e-6)


def test_hp_zero_over_zero_counts_as_zero():
    # Every class is at distance 1 from every other: a query of an absent class has nothing similar.
    qb = np.array([[0, 1, 1]], dtype=np.uint8)
    db = np.array([[0, 1, 1], [1, 1, 1]], dtype=np.uint8)
    dmat = 1.0 - np.eye(3)
    np.testing.assert_array_equal(hp_at_k(qb, db, [2], [0, 1], semantic_distance=dmat, k=2), [0.0, 0.0])
    assert mean_average_precision(qb, db, [2], [0, 1]) == 0.0


@pytest.mark.parametrize("distance", ["l1", "l2"])
def test_continuous_distances_match_reference_including_exact_ties(distance):
    rng = np.random.default_rng(11)
    # Quantised values make many exactly-equal distances, so tie order is exercised.
    qc = rng.integers(0, 3, (17, 4)) / 2.0
    dc = rng.integers(0, 3, (50, 4)) / 2.0
    ql, dl = rng.integers(0, 5, 17), rng.integers(0, 5, 50)
    dmat = random_tree_distances(rng, 5)
    ref = ref_metrics(qc, dc, ql, dl, distance, dmat=dmat, hpk=20)
    assert mean_average_precision(qc, dc, ql, dl, distance=distance) == pytest.approx(ref["map"])
    assert mahp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=20, distance=distance) == pytest.approx(
        ref["mahp"]
    )


@pytest.mark.parametrize("distance", ["hamming", "l1"])
def test_ref_includes_query_removes_self_matches(distance):
    rng, qb, db, ql, dl = make_data(8, nq=15, nd=40, absent=False)
    db[:15], dl[:15] = qb, ql
    dmat = random_tree_distances(rng, 6)
    qc, dc = (qb, db) if distance == "hamming" else (qb * 0.8 + 0.1, db * 0.8 + 0.1)
    ref = ref_metrics(qc, dc, ql, dl, distance, pk=5, dmat=dmat, hpk=39, self_excluded=True)
    kw = {"distance": distance, "ref_includes_query": True}
    assert mean_average_precision(qc, dc, ql, dl, **kw) == pytest.approx(ref["map"])
    assert precision_at_k(qc, dc, ql, dl, k=5, **kw) == pytest.approx(ref["p"])
    np.testing.assert_allclose(
        hp_at_k(qc, dc, ql, dl, semantic_distance=dmat, k=39, **kw), ref["curve"], atol=1e-9
    )
    with pytest.raises(ValueError, match="ref_includes_query"):
        mean_average_precision(qc, dc[::-1].copy(), ql, dl, **kw)


def test_larger_random_run_uses_chunks_and_threads_consistently():
    from pml_shrewd.retrieval.metrics import _rank_queries

    rng = np.random.default_rng(3)
    qb = rng.integers(0, 2, (300, 12)).astype(np.uint8)
    db = rng.integers(0, 2, (700, 12)).astype(np.uint8)
    ql, dl = rng.integers(0, 9, 300), rng.integers(0, 9, 700)
    dmat = random_tree_distances(rng, 9)
    kw = dict(full_ap=True, ap_ks=(50,), p_ks=(10,), hp_k=100, semantic_distance=dmat)
    a = _rank_queries(qb, db, ql, dl, chunk_size=300, num_threads=1, **kw)
    b = _rank_queries(qb, db, ql, dl, chunk_size=7, num_threads=3, **kw)
    np.testing.assert_array_equal(a["ap"], b["ap"])
    np.testing.assert_array_equal(a["hp"], b["hp"])
    ref = ref_metrics(qb[:40], db, ql[:40], dl, "hamming")
    assert a["ap"][:40].mean() == pytest.approx(ref["map"])


def test_evaluate_codes_reports_binary_and_continuous_metrics():
    rng = np.random.default_rng(4)
    qz, dz = rng.random((20, 8)), rng.random((70, 8))
    ql, dl = rng.integers(0, 4, 20), rng.integers(0, 4, 70)
    dmat = random_tree_distances(rng, 4)
    m = evaluate_codes(qz, dz, ql, dl, semantic_distance=dmat, k=25, return_curves=True)
    qb, db = binarize(qz), binarize(dz)
    assert m["k"] == 25 and isinstance(m["k"], int)
    assert m["mAP"] == pytest.approx(mean_average_precision(qb, db, ql, dl))
    assert m["mAP@k"] == pytest.approx(mean_average_precision(qb, db, ql, dl, k=25))
    assert m["P@k"] == pytest.approx(precision_at_k(qb, db, ql, dl, k=25))
    assert m["mAHP@k"] == pytest.approx(mahp_at_k(qb, db, ql, dl, semantic_distance=dmat, k=25))
    assert m["mAP_continuous"] == pytest.approx(mean_average_precision(qz, dz, ql, dl, distance="l1"))
    assert m["mAP@k_continuous"] == pytest.approx(mean_average_precision(qz, dz, ql, dl, k=25, distance="l1"))
    assert m["P@k_continuous"] == pytest.approx(precision_at_k(qz, dz, ql, dl, k=25, distance="l1"))
    assert m["mAHP@k_continuous"] == pytest.approx(
        mahp_at_k(qz, dz, ql, dl, semantic_distance=dmat, k=25, distance="l1")
    )
    ref_balance = np.mean([abs(db[:, j].mean() - 0.5) for j in range(8)])
    assert m["bit_balance"] == pytest.approx(ref_balance)
    assert m["quantization_error"] == pytest.approx(np.abs(dz - db).mean())
    assert len(m["hp_curve"]) == 25 and len(m["hp_curve_continuous"]) == 25
    assert "mAHP@k" not in evaluate_codes(qz, dz, ql, dl, k=25)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        evaluate_codes(qz * 2 - 1, dz * 2 - 1, ql, dl)


def test_evaluate_codes_scores_extra_hierarchies_on_the_same_rankings():
    rng = np.random.default_rng(5)
    qz, dz = rng.random((30, 8)), rng.random((90, 8))
    ql, dl = rng.integers(0, 5, 30), rng.integers(0, 5, 90)
    main, other = random_tree_distances(rng, 5), random_tree_distances(rng, 5)
    m = evaluate_codes(
        qz, dz, ql, dl, semantic_distance=main, k=20, extra_semantic_distances={"other": other}
    )
    qb, db = binarize(qz), binarize(dz)
    assert m["mAHP@k"] == pytest.approx(mahp_at_k(qb, db, ql, dl, semantic_distance=main, k=20))
    assert m["mAHP@k [other]"] == pytest.approx(mahp_at_k(qb, db, ql, dl, semantic_distance=other, k=20))
    assert m["mAHP@k_continuous [other]"] == pytest.approx(
        mahp_at_k(qz, dz, ql, dl, semantic_distance=other, k=20, distance="l1")
    )
    with pytest.raises(ValueError, match="extra_semantic_distances"):
        evaluate_codes(qz, dz, ql, dl, k=20, extra_semantic_distances={"other": other})


def test_metric_errors_are_clear():
    qb = np.zeros((3, 8), dtype=np.uint8)
    db = np.ones((4, 8), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\].*found values in \[2, 2\]"):
        mean_average_precision(qb + 2, db, [0, 1, 2], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="same number of bits"):
        mean_average_precision(qb[:, :4], db, [0, 1, 2], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="labels"):
        mean_average_precision(qb, db, [0, 1], [0, 1, 2, 3])
    with pytest.raises(ValueError, match="distance must be one of"):
        mean_average_precision(qb, db, [0, 1, 2], [0, 1, 2, 3], distance="chebyshev")
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k(qb, db, [0, 1, 2], [0, 1, 2, 3], k=0)
    with pytest.raises(IndexError, match="semantic distance matrix"):
        hp_at_k(qb, db, [0, 1, 2], [0, 1, 2, 5], semantic_distance=np.zeros((4, 4)), k=2)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        hp_at_k(qb, db, [0, 1, 2], [0, 1, 2, 3], semantic_distance=np.full((4, 4), 2.0), k=2)
    with pytest.raises(ValueError, match="NaN"):
        mean_average_precision(np.full((3, 8), np.nan), db * 1.0, [0, 1, 2], [0, 1, 2, 3], distance="l1")


# ----------------------------------------------------------------------------- codes


def test_binarize_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    z = rng.random((9, 24))
    bits = binarize(z)
    np.testing.assert_array_equal(bits, [[int(v > 0.5) for v in row] for row in z])
    tb = binarize(torch.from_numpy(z))
    assert isinstance(tb, torch.Tensor) and tb.dtype == torch.uint8
    np.testing.assert_array_equal(tb.numpy(), bits)
    np.testing.assert_array_equal(binarize(z * 2 - 1, signed=True), bits)
    np.testing.assert_array_equal(binarize(z, threshold=0.9), (z > 0.9).astype(np.uint8))
    packed = pack_codes(bits)
    assert packed.dtype == np.uint8 and packed.shape == (9, 3)
    for i in range(9):  # reference: most significant bit first within each byte
        for byte in range(3):
            expected = sum(int(bits[i, byte * 8 + t]) << (7 - t) for t in range(8))
            assert packed[i, byte] == expected
    np.testing.assert_array_equal(unpack_codes(packed, 24), bits)
    assert bit_balance(np.array([[0, 1], [1, 1]])) == pytest.approx((0.0 + 0.5) / 2)


def test_code_errors_are_clear():
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_codes(np.zeros((2, 12), dtype=np.uint8))
    with pytest.raises(ValueError, match="only 0 and 1"):
        pack_codes(np.full((2, 8), 0.5))
    with pytest.raises(ValueError, match="NaN"):
        binarize(np.array([[np.nan, 0.2]]))
    with pytest.raises(ValueError, match="NaN"):
        binarize(torch.tensor([[float("nan"), 0.2]]))
    with pytest.raises(ValueError, match="num_bits"):
        unpack_codes(np.zeros((2, 2), dtype=np.uint8), 24)
    with pytest.raises(TypeError, match="uint8"):
        unpack_codes(np.zeros((2, 2), dtype=np.int32), 16)


# ----------------------------------------------------------------------------- API (issues 15, 19)


def test_every_metric_takes_four_positional_arguments_and_keywords_after():
    _, qb, db, ql, dl = make_data(0)
    dmat = 1.0 - np.eye(6)
    for call in (
        lambda: mean_average_precision(qb, db, ql, dl, 5),
        lambda: precision_at_k(qb, db, ql, dl, 5),
        lambda: hp_at_k(qb, db, ql, dl, dmat),
        lambda: mahp_at_k(qb, db, ql, dl, dmat),
        lambda: evaluate_codes(qb, db, ql, dl, dmat),
    ):
        with pytest.raises(TypeError, match="positional"):
            call()
    # One k default (250, clipped to the database) wherever k is a cut-off.
    assert precision_at_k(qb, db, ql, dl) == precision_at_k(qb, db, ql, dl, k=250)
    assert mahp_at_k(qb, db, ql, dl, semantic_distance=dmat) == mahp_at_k(
        qb, db, ql, dl, semantic_distance=dmat, k=250
    )
    assert evaluate_codes(qb, db, ql, dl)["k"] == min(250, len(db))


def test_evaluate_codes_keys_do_not_change_with_the_database_size():
    rng = np.random.default_rng(9)
    dmat = random_tree_distances(rng, 4)
    keys = []
    for n in (30, 400):
        qz, dz = rng.random((10, 8)), rng.random((n, 8))
        ql, dl = rng.integers(0, 4, 10), rng.integers(0, 4, n)
        m = evaluate_codes(
            qz, dz, ql, dl, semantic_distance=dmat, return_curves=True, extra_semantic_distances={"x": dmat}
        )
        assert m["k"] == min(250, n) and len(m["hp_curve"]) == m["k"]
        assert m["mAHP@k"] == pytest.approx(mahp_at_k(qz, dz, ql, dl, semantic_distance=dmat, k=m["k"]))
        assert m["mAHP@k [x]"] == m["mAHP@k"]
        keys.append(sorted(m))
    assert keys[0] == keys[1]
    assert keys[0] == sorted(
        [
            f"{base}{suffix}"
            for base in ("mAP", "mAP@k", "P@k", "mAHP@k", "hp_curve")
            for suffix in ("", "_continuous")
        ]
        + ["mAHP@k [x]", "mAHP@k_continuous [x]", "k", "bit_balance", "quantization_error"]
    )


@pytest.mark.parametrize("side", ["query_codes", "db_codes"])
def test_evaluate_codes_refuses_logits_and_l2_normalised_codes_on_either_side(side):
    rng = np.random.default_rng(6)
    qz, dz = rng.random((12, 16)), rng.random((40, 16))
    ql, dl = rng.integers(0, 3, 12), rng.integers(0, 3, 40)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    for bad, match in ((lambda x: x * 10 - 5, r"must lie in \[0, 1\]"), (unit, "unit L2 norm")):
        args = {"query_codes": (bad(qz), dz), "db_codes": (qz, bad(dz))}[side]
        with pytest.raises(ValueError, match=rf"{side}.*{match}|every row of {side}"):
            evaluate_codes(*args, ql, dl)
    # Already binary one-hot codes are their own L2 normalisation: accepted.
    onehot = np.eye(16)[rng.integers(0, 16, 40)]
    assert 0 <= evaluate_codes(onehot[:12], onehot, dl[:12], dl)["mAP"] <= 1


def test_hamming_metrics_binarise_unit_interval_codes_and_refuse_logits():
    rng = np.random.default_rng(12)
    qz, dz = rng.random((15, 8)), rng.random((50, 8))
    ql, dl = rng.integers(0, 4, 15), rng.integers(0, 4, 50)
    # query_codes means the same in every function: codes in [0, 1], bits = code > 0.5 for Hamming.
    assert mean_average_precision(qz, dz, ql, dl) == mean_average_precision(
        binarize(qz), binarize(dz), ql, dl
    )
    assert evaluate_codes(qz, dz, ql, dl)["mAP"] == mean_average_precision(qz, dz, ql, dl)
    with pytest.raises(ValueError, match=r"torch.sigmoid"):
        mean_average_precision(qz * 6 - 3, dz, ql, dl)
    # Continuous rankings take any real codes (e.g. embeddings of PML baselines).
    assert 0 <= mean_average_precision(qz * 6 - 3, dz * 6 - 3, ql, dl, distance="l2") <= 1


def test_bfloat16_codes_are_converted():
    rng = np.random.default_rng(13)
    qz, dz = torch.from_numpy(rng.random((20, 16))), torch.from_numpy(rng.random((60, 16)))
    ql, dl = torch.from_numpy(rng.integers(0, 4, 20)), torch.from_numpy(rng.integers(0, 4, 60))
    dmat = random_tree_distances(rng, 4)
    qh, dh = qz.to(torch.bfloat16), dz.to(torch.bfloat16)
    qf, df = qh.float(), dh.float()  # bfloat16 -> float32 is exact
    assert mean_average_precision(qh, dh, ql, dl) == mean_average_precision(qf, df, ql, dl)
    assert mahp_at_k(qh, dh, ql, dl, semantic_distance=dmat, k=30, distance="l1") == mahp_at_k(
        qf, df, ql, dl, semantic_distance=dmat, k=30, distance="l1"
    )
    assert mahp_at_k(binarize(qh), binarize(dh), ql, dl, semantic_distance=dmat, k=30) == pytest.approx(
        mahp_at_k(qf, df, ql, dl, semantic_distance=dmat, k=30)
    )
    assert evaluate_codes(qh, dh, ql, dl)["mAP"] == evaluate_codes(qf, df, ql, dl)["mAP"]


def test_long_rankings_show_a_progress_bar(capsys):
    rng = np.random.default_rng(0)
    q, db = rng.integers(0, 2, (2000, 16)), rng.integers(0, 2, (60000, 16))
    mean_average_precision(q, db, np.zeros(2000, int), np.zeros(60000, int), k=10)
    assert "ranking" in capsys.readouterr().err  # 1.2e8 pairs: long enough to show one
    mean_average_precision(q[:10], db[:10], np.zeros(10, int), np.zeros(10, int))
    assert "ranking" not in capsys.readouterr().err


def test_cosine_ranking_of_real_vectors_matches_a_loop():
    from pml_shrewd.retrieval import evaluate_embeddings

    rng = np.random.RandomState(5)
    dist = rng.rand(4, 4)
    dist = (dist + dist.T) / 2
    np.fill_diagonal(dist, 0)
    for dtype in (np.float32, np.float64):
        qx, dx = rng.randn(7, 6).astype(dtype), rng.randn(15, 6).astype(dtype) * 4
        ql, dl = rng.randint(0, 4, 7), rng.randint(0, 4, 15)
        m = evaluate_embeddings(qx, dx, ql, dl, semantic_distance=dist, k=5)
        ap, hp = [], []
        for a in range(7):
            cos = [float(qx[a] @ dx[b]) / (np.linalg.norm(qx[a]) * np.linalg.norm(dx[b])) for b in range(15)]
            order = sorted(range(15), key=lambda b: (-cos[b], b))
            rel = [dl[b] == ql[a] for b in order]
            hits = np.cumsum(rel)
            ap.append(sum(hits[i] / (i + 1) for i in range(15) if rel[i]) / max(1, sum(rel)))
            sims = 1 - dist[ql[a], dl]
            gained = np.cumsum(sims[order][:5])
            ideal = np.cumsum(np.sort(sims)[::-1][:5])
            curve = gained / ideal
            hp.append(sum((curve[i] + curve[i + 1]) / 2 for i in range(4)) / 5)
        assert m["k"] == 5
        assert m["mAP"] == pytest.approx(np.mean(ap), abs=1e-6)
        assert m["mAHP@k"] == pytest.approx(np.mean(hp), abs=1e-6)
        again = evaluate_embeddings(
            qx * 3, dx * rng.uniform(0.5, 2, (15, 1)), ql, dl, semantic_distance=dist, k=5
        )
        assert again["mAHP@k"] == pytest.approx(m["mAHP@k"], abs=1e-9)  # cosine: scale-free per row
