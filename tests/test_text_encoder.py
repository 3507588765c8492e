"""Text queries into the image index: the text encoder, its training, its figures, and the CLI."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from pml_shrewd.cli import main
from pml_shrewd.models import TextHashEncoder
from pml_shrewd.semantic_distances import CaptionSetDistance
from pml_shrewd.training import text_to_image_figures, train_text_encoder


def test_text_to_image_ranks_match_a_loop():
    rng = np.random.RandomState(0)
    images = (rng.rand(12, 8) > 0.5).astype(np.float32)
    images[7] = images[2]  # a tie: the lower index ranks first
    texts = rng.rand(20, 8).astype(np.float32)
    own = rng.randint(0, 12, 20)
    own[0] = 7
    texts[0] = images[7]
    got = text_to_image_figures(texts, own, images, ks=(1, 3))
    ranks = []
    for q in range(20):
        d = [int(((texts[q] > 0.5) != (images[b] > 0.5)).sum()) for b in range(12)]
        order = sorted(range(12), key=lambda b: (d[b], b))
        ranks.append(order.index(own[q]))
    assert ranks[0] == 1  # image 2 has the same code and a lower index
    assert got["R@1"] == pytest.approx(np.mean(np.array(ranks) < 1))
    assert got["R@3"] == pytest.approx(np.mean(np.array(ranks) < 3))
    assert got["median rank"] == pytest.approx(np.median(np.array(ranks) + 1))
    with pytest.raises(ValueError, match="query_images"):
        text_to_image_figures(texts, own + 12, images)


def test_the_text_encoder_learns_to_code_captions_near_their_images():
    rng = np.random.RandomState(1)
    n, dim = 60, 16
    targets = rng.randn(n, dim)
    targets /= np.linalg.norm(targets, axis=1, keepdims=True)
    # Image codes that follow the targets (random hyperplanes), captions near their image's target.
    codes = (targets @ rng.randn(dim, 32) > 0).astype(np.float32)
    captions = np.repeat(targets, 3, axis=0) + 0.15 * rng.randn(3 * n, dim)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n), 3)
    untrained = TextHashEncoder(dim, 32)
    before = text_to_image_figures(
        untrained(torch.as_tensor(captions, dtype=torch.float32)).detach(), owner, codes
    )
    encoder = train_text_encoder(codes, targets, captions, owner, steps=300, batch_size=64, progress=False)
    with torch.no_grad():
        text_codes = encoder(torch.as_tensor(captions, dtype=torch.float32))
    after = text_to_image_figures(text_codes, owner, codes)
    assert torch.isfinite(text_codes).all() and text_codes.shape == (3 * n, 32)
    assert after["R@5"] > max(0.5, before["R@5"] + 0.3), (before, after)
    with pytest.raises(ValueError, match="must agree"):
        train_text_encoder(codes, targets[:5], captions, owner, steps=1)
    with pytest.raises(ValueError, match="index the"):
        train_text_encoder(codes, targets, captions, owner + n, steps=1)


def test_save_and_load_the_text_encoder(tmp_path):
    encoder = TextHashEncoder(16, 8, sentence_model="some/model", hidden_dim=32)
    encoder.save_pretrained(tmp_path / "run" / "text_encoder")
    again = TextHashEncoder.from_pretrained(tmp_path / "run")  # from the model's folder
    x = torch.randn(4, 16)
    torch.testing.assert_close(encoder.eval()(x), again(x))
    assert again.sentence_model == "some/model" and again.num_bits == 8
    with pytest.raises(FileNotFoundError, match="train-text"):
        TextHashEncoder.from_pretrained(tmp_path / "elsewhere")
    (tmp_path / "run" / "text_encoder" / "config.json").write_text("{")
    with pytest.raises(ValueError, match="not a text encoder config"):
        TextHashEncoder.from_pretrained(tmp_path / "run")


def test_search_by_text_into_an_index_of_images_without_captions(tmp_path, capsys):
    from test_data_layouts import CAPTIONS, write_captions
    from test_training_trainer import run_recipe

    data = write_captions(tmp_path / "caps")
    run_recipe("captions_shrewd", data, "captions", tmp_path / "run")
    assert main(["train-text", "--model", str(tmp_path / "run"), "--steps", "30"]) == 0
    encoder = TextHashEncoder.from_pretrained(tmp_path / "run")
    provider = CaptionSetDistance([[c] for c in CAPTIONS])
    assert encoder.config["embedding_dim"] == provider.caption_embeddings.shape[1]
    # A plain folder of the photos: no captions anywhere in the index.
    photos = tmp_path / "photos"
    photos.mkdir()
    for path in sorted((tmp_path / "caps" / "img").glob("*.png")):
        shutil.copy(path, photos / path.name)
    out = tmp_path / "idx"
    assert main(["index", "--model", str(tmp_path / "run"), "--data", str(photos), "--out", str(out)]) == 0
    assert not json.loads((out / "meta.json").read_text())["captioned"]
    hits_file = tmp_path / "hits.json"
    args = ["search", "--index", str(out), "--caption", "a dog on the grass", "--caption", "a red car"]
    assert main([*args, "--k", "5", "--json", str(hits_file)]) == 0
    results = json.loads(hits_file.read_text())
    assert len(results) == 2 and all(len(hits) == 5 for hits in results)
    # The hits are the text codes' nearest images by Hamming distance.
    codes = encoder.encode(["a dog on the grass"]).numpy() > 0.5
    assert [h["hamming"] for h in results[0]] == sorted(h["hamming"] for h in results[0])
    from pml_shrewd.retrieval import HashIndex

    dist, ids = HashIndex.load(str(out / "index.faiss")).search(codes.astype(np.uint8), 5)
    assert [h["id"] for h in results[0]] == ids[0].tolist()
    assert "caption 'a red car'" in capsys.readouterr().out
