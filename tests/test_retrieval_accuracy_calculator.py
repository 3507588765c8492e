"""HashingAccuracyCalculator returns PML's metrics (ranked by Hamming) plus ours, equal to the direct functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning import testers
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from pml_shrewd.retrieval import (
    HammingKNN,
    HashingAccuracyCalculator,
    binarize,
    mahp_at_k,
    mean_average_precision,
)


def ref_hamming_knn(query, k, reference, ref_includes_query=False):
    """Brute force: bits ``code > 0.5``, Hamming distance, ties by reference index, own item left out."""
    qb, rb = (query.cpu().numpy() > 0.5), (reference.cpu().numpy() > 0.5)
    dist, idx = [], []
    for i, q in enumerate(qb):
        items = sorted(
            (int((q != r).sum()), j) for j, r in enumerate(rb) if not (ref_includes_query and j == i)
        )[:k]
        dist.append([d for d, _ in items])
        idx.append([j for _, j in items])
    return torch.tensor(dist, dtype=torch.float32), torch.tensor(idx, dtype=torch.long)


def tree_distances(num_classes):
    # Two super-classes: distance 0.5 inside, 1 across, 0 to itself.
    d = np.ones((num_classes, num_classes))
    for a in range(num_classes):
        for b in range(num_classes):
            if a == b:
                d[a, b] = 0.0
            elif a % 2 == b % 2:
                d[a, b] = 0.5
    return d


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    q = rng.random((30, 8)).astype(np.float32)
    r = rng.random((80, 8)).astype(np.float32)
    ql, rl = rng.integers(0, 4, 30), rng.integers(0, 4, 80)
    return q, r, ql, rl, tree_distances(4)


def test_returns_pml_metrics_plus_ours_matching_direct_functions(data):
    q, r, ql, rl, dmat = data
    calc = HashingAccuracyCalculator(semantic_distance=dmat, hp_k=20, device=torch.device("cpu"))
    acc = calc.get_accuracy(q, ql, r, rl)
    # PML's own metrics, with PML's code but the reference Hamming k-NN (ties by index).
    pml = AccuracyCalculator(device=torch.device("cpu"), knn_func=ref_hamming_knn).get_accuracy(q, ql, r, rl)
    assert {"precision_at_1", "mean_average_precision_at_r", "r_precision", "NMI"} <= set(pml)
    for key, value in pml.items():
        assert acc[key] == pytest.approx(value), key
    qb, rb = binarize(q), binarize(r)
    assert acc["hamming_mAP"] == pytest.approx(mean_average_precision(qb, rb, ql, rl))
    assert acc["hamming_mAHP"] == pytest.approx(mahp_at_k(qb, rb, ql, rl, semantic_distance=dmat, k=20))
    assert acc["mAHP"] == pytest.approx(mahp_at_k(q, r, ql, rl, semantic_distance=dmat, k=20, distance="l1"))


def test_ref_includes_query_excludes_self_matches(data):
    q, _, ql, _, dmat = data
    calc = HashingAccuracyCalculator(semantic_distance=dmat, hp_k=10, device=torch.device("cpu"))
    acc = calc.get_accuracy(torch.from_numpy(q), torch.from_numpy(ql))  # reference = query
    qb = binarize(q)
    expected = mean_average_precision(qb, qb, ql, ql, ref_includes_query=True)
    assert acc["hamming_mAP"] == pytest.approx(expected)
    # Self matches would make the first result always relevant: the plain value differs.
    assert expected != pytest.approx(mean_average_precision(qb, qb, ql, ql))
    assert acc["hamming_mAHP"] == pytest.approx(
        mahp_at_k(qb, qb, ql, ql, semantic_distance=dmat, k=10, ref_includes_query=True)
    )


def test_without_semantic_distance_only_hamming_map(data):
    q, r, ql, rl, _ = data
    calc = HashingAccuracyCalculator(device=torch.device("cpu"))
    acc = calc.get_accuracy(q, ql, r, rl)
    assert "hamming_mAP" in acc and "hamming_mAHP" not in acc and "mAHP" not in acc
    only = HashingAccuracyCalculator(include=("hamming_mAP",), device=torch.device("cpu"))
    assert set(only.get_accuracy(q, ql, r, rl)) == {"hamming_mAP"}
    with pytest.raises(ValueError, match="semantic_distance"):
        HashingAccuracyCalculator(include=("mAHP",))


def test_signed_codes_binarise_at_zero(data):
    q, r, ql, rl, dmat = data
    calc = HashingAccuracyCalculator(
        semantic_distance=dmat, hp_k=15, signed=True, include=("hamming_mAP",), device=torch.device("cpu")
    )
    acc = calc.get_accuracy(q * 2 - 1, ql, r * 2 - 1, rl)
    assert acc["hamming_mAP"] == pytest.approx(mean_average_precision(binarize(q), binarize(r), ql, rl))


def test_inherited_pml_metrics_rank_by_hamming_not_l2():
    # Query bits 1111. L2 ranks A (0.49s: bits 0000, another class; 0.22 away), C (bits 1110,
    # another class; 0.79), then B (bits 1111, the query's class; 0.80); Hamming ranks B first.
    q = np.array([[0.6, 0.6, 0.6, 0.6]], dtype=np.float32)
    r = np.array([[0.49] * 4, [1.0] * 4, [0.9, 0.9, 0.9, 0.0]], dtype=np.float32)
    ql, rl = np.array([1]), np.array([0, 1, 0])
    include = ("precision_at_1", "mean_average_precision", "mean_average_precision_at_r", "r_precision")
    cpu = torch.device("cpu")
    l2 = AccuracyCalculator(include=include, device=cpu).get_accuracy(q, ql, r, rl)
    ours = HashingAccuracyCalculator(include=include, device=cpu).get_accuracy(q, ql, r, rl)
    assert l2["precision_at_1"] == 0.0 and l2["mean_average_precision"] == pytest.approx(1 / 3)
    assert ours["precision_at_1"] == 1.0 and ours["mean_average_precision"] == 1.0
    assert ours["mean_average_precision_at_r"] == 1.0 and ours["r_precision"] == 1.0


def test_hamming_knn_breaks_ties_by_index_and_leaves_the_query_out():
    codes = torch.tensor([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    dist, idx = HammingKNN()(codes[:2], 4, codes, ref_includes_query=True)
    # Query 0 (bits 10): item 2 at 0, then items 1, 4 at 1 (index order), then 3 at 2.
    assert idx.tolist() == [[2, 1, 4, 3], [0, 2, 3, 4]] and dist.tolist() == [[0, 1, 1, 2], [1, 1, 1, 2]]
    dist, idx = HammingKNN(signed=True)(codes[:1] * 2 - 1, 2, codes * 2 - 1)
    assert idx.tolist() == [[0, 2]] and dist.dtype == torch.float32


@pytest.mark.parametrize("side", ["query", "reference"])
def test_codes_outside_unit_interval_or_l2_normalised_are_refused(data, side):
    q, r, ql, rl, dmat = data
    calc = HashingAccuracyCalculator(semantic_distance=dmat, hp_k=10, device=torch.device("cpu"))
    logits = {"query": (q * 8 - 4, r), "reference": (q, r * 8 - 4)}[side]
    with pytest.raises(ValueError, match=rf"{side} must lie in \[0, 1\].*normalize_embeddings=False"):
        calc.get_accuracy(logits[0], ql, logits[1], rl)
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    normed = {"query": (unit(q), r), "reference": (q, unit(r))}[side]
    with pytest.raises(ValueError, match=rf"{side} has unit L2 norm.*normalize_embeddings=False"):
        calc.get_accuracy(normed[0], ql, normed[1], rl)
    # Signed codes: [-1, 1] is the range; L2 normalisation keeps the signs, hence the bits.
    signed = HashingAccuracyCalculator(signed=True, include=("hamming_mAP",), device=torch.device("cpu"))
    ok = signed.get_accuracy(unit(q * 2 - 1), ql, unit(r * 2 - 1), rl)["hamming_mAP"]
    assert ok == pytest.approx(mean_average_precision(binarize(q), binarize(r), ql, rl))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        signed.get_accuracy(q * 4 - 2, ql, r, rl)


@pytest.mark.parametrize("normalize", [True, False])
def test_pml_tester_needs_normalize_embeddings_false(data, normalize):
    q, _, ql, _, dmat = data
    tester = testers.GlobalEmbeddingSpaceTester(
        normalize_embeddings=normalize,
        accuracy_calculator=HashingAccuracyCalculator(
            semantic_distance=dmat, hp_k=10, device=torch.device("cpu")
        ),
        dataloader_num_workers=0,
        data_device=torch.device("cpu"),
    )
    dataset = torch.utils.data.TensorDataset(torch.from_numpy(q), torch.from_numpy(ql))
    model = torch.nn.Identity()  # the codes are the inputs
    if normalize:  # PML's default: codes shrink below 0.5 and would all binarise to 0
        with pytest.raises(ValueError, match="normalize_embeddings=False"):
            tester.test({"val": dataset}, 0, model)
        return
    acc = tester.test({"val": dataset}, 0, model)["val"]
    qb = binarize(q)
    assert acc["hamming_mAP_level0"] == pytest.approx(
        mean_average_precision(qb, qb, ql, ql, ref_includes_query=True)
    )
    assert acc["hamming_mAP_level0"] > 0.3  # far above what all-zero codes would give
