"""Text-to-image rows on a caption benchmark's saved codes (pml_shrewd.benchmarking.text_queries):
the nearest-caption route against a slow reference, and the text-encoder rows' outputs."""

from __future__ import annotations

import numpy as np
import pytest
from test_captions_multi import write_multi

from pml_shrewd.benchmarking.text_queries import text_to_image_rows
from pml_shrewd.data import CaptionedImages
from pml_shrewd.retrieval import pack_codes
from pml_shrewd.semantic_distances import encode_sentences


def _reference_rank(query_code: np.ndarray, own: int, codes: np.ndarray) -> int:
    """0-based rank of image ``own`` when ``codes`` are sorted by Hamming distance to the query,
    ties in index order: one image at a time."""
    mine = int((query_code != codes[own]).sum())
    rank = 0
    for j, code in enumerate(codes):
        d = int((query_code != code).sum())
        rank += d < mine or (d == mine and j < own)
    return rank


@pytest.fixture
def saved_codes(tmp_path, monkeypatch):
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    csv_path, _, _ = write_multi(tmp_path / "cap", n=24)
    data = CaptionedImages(csv_path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    rng = np.random.default_rng(0)
    bits = 16
    train_ids, test_ids = np.arange(12, 24), np.arange(12)  # labels are image ids, any order
    train_codes = rng.integers(0, 2, (12, bits)).astype(np.uint8)
    test_codes = rng.integers(0, 2, (12, bits)).astype(np.uint8)
    path = tmp_path / "codes.npz"
    np.savez(
        path, bits=bits, train_codes=pack_codes(train_codes), test_codes=pack_codes(test_codes),
        train_labels=train_ids, test_labels=test_ids,
    )  # fmt: skip
    return path, data, test_ids, test_codes


def test_nearest_caption_route_against_a_slow_reference(saved_codes):
    path, data, test_ids, test_codes = saved_codes
    rows = text_to_image_rows(path, data, steps=3, k=5)
    assert list(rows) == ["text encoder", "nearest caption"]
    # Reference: each held-out caption becomes the test image whose first training caption is the
    # most similar (cosine of the sentence embeddings), and that image's code ranks the test images.
    indexed = encode_sentences([data.caption_sets[i][0] for i in test_ids]).numpy().astype(np.float64)
    indexed /= np.linalg.norm(indexed, axis=1, keepdims=True)
    ranks = []
    for pos, image in enumerate(test_ids):
        for text in data.held_out_sets[image]:
            q = encode_sentences([text]).numpy()[0].astype(np.float64)
            nearest = int(np.argmax(indexed @ (q / np.linalg.norm(q))))
            ranks.append(_reference_rank(test_codes[nearest], pos, test_codes))
    ranks = np.array(ranks)
    assert len(ranks) == 24  # two held-out captions per test image
    got = rows["nearest caption"]
    for k in (1, 5, 10):
        assert got[f"R@{k}"] == pytest.approx((ranks < k).mean())
    assert got["median rank"] == pytest.approx(np.median(ranks + 1))
    assert 0.0 <= got["mAHP@k"] <= 1.0 and got["k"] == 5


def test_text_encoder_rows_and_the_fit_on_queries_reference(saved_codes, tmp_path):
    path, data, _, _ = saved_codes
    rows = text_to_image_rows(path, data, steps=3, k=5, fit_on_queries=True, save_to=tmp_path / "enc")
    assert list(rows) == [
        "text encoder",
        "text encoder, fit on the query images' captions",
        "nearest caption",
    ]
    for figures in rows.values():
        assert set(figures) == {"R@1", "R@5", "R@10", "median rank", "mAHP@k", "k"}
        assert 0.0 <= figures["R@1"] <= figures["R@5"] <= figures["R@10"] <= 1.0
    assert (tmp_path / "enc" / "config.json").is_file()  # the shipped encoder, not the reference one
