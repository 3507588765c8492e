"""HashingAccuracyCalculator returns PML's metrics plus ours, equal to the direct functions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

from pml_shrewd.retrieval import HashingAccuracyCalculator, binarize, mahp_at_k, mean_average_precision


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
    pml = AccuracyCalculator(device=torch.device("cpu")).get_accuracy(q, ql, r, rl)
    for key, value in pml.items():
        assert acc[key] == pytest.approx(value)
    qb, rb = binarize(q), binarize(r)
    assert acc["hamming_mAP"] == pytest.approx(mean_average_precision(qb, rb, ql, rl))
    assert acc["hamming_mAHP"] == pytest.approx(mahp_at_k(qb, rb, ql, rl, dmat, k=20))
    assert acc["mAHP"] == pytest.approx(mahp_at_k(q, r, ql, rl, dmat, k=20, distance="l1"))


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
        mahp_at_k(qb, qb, ql, ql, dmat, k=10, ref_includes_query=True)
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
