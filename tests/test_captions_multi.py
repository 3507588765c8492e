"""Several captions per image (issue 16): one sample per image, mean / random targets, split files,
held-out caption evaluation (graded mAHP@k and nDCG@k, sentence and model-free relevance) against
slow references, and bad caption files. Tiny generated images; a hashed fake sentence encoder."""

from __future__ import annotations

import csv
import hashlib
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from pml_shrewd.data import CaptionedImages, build_datasets, semantic_distance_for
from pml_shrewd.retrieval import mahp_at_k
from pml_shrewd.retrieval.captions import (
    caption_relevance,
    evaluate_caption_codes,
    evaluate_caption_embeddings,
    ndcg_at_k,
)
from pml_shrewd.semantic_distances import (
    CaptionSetDistance,
    CaptionWordDistance,
    build_semantic_distance,
    content_lemmas,
    draw_captions,
)

SUBJECTS = ["dog", "cat", "truck", "ship", "horse", "child"]
PLACES = ["beach", "street", "park", "harbour", "garden", "snow"]


class FakeEncoder:
    """A deterministic stand-in for a sentence model: each text hashes to a random unit vector."""

    def __init__(self, dim=16):
        self.dim, self.calls = dim, 0

    def vector(self, text):
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
        v = np.random.RandomState(seed).randn(self.dim)
        return v / np.linalg.norm(v)

    def encode(self, texts, **kwargs):
        self.calls += 1
        return torch.as_tensor(np.stack([self.vector(t) for t in texts]), dtype=torch.float32)


def image_captions(i, per_image=5):
    s, p = SUBJECTS[i % len(SUBJECTS)], PLACES[(i // 2) % len(PLACES)]
    forms = [
        f"a {s} in the {p}",
        f"two {s}s running near the {p}",
        f"the {s} is sitting by the {p}",
        f"a small {s} and a {p}",
        f"{s}s playing in a {p}",
    ]
    return forms[:per_image]


def write_multi(root, n=12, per_image=5, split_column=False, splits_file=False, extra_rows=()):
    """A Flickr8k-like table: ``n`` images, ``per_image`` rows each (one per caption), interleaved."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    names = [f"{i:03d}.png" for i in range(n)]
    for i, name in enumerate(names):
        arr = np.full((8, 8, 3), (i * 20) % 255, np.uint8)
        Image.fromarray(arr).save(root / "images" / name)
    split_of = {
        name: ("train" if i < n - 4 else "test" if i < n - 2 else "dev") for i, name in enumerate(names)
    }
    rows = []
    for c in range(per_image):  # rows of an image are not adjacent: grouping must not rely on it
        for i, name in enumerate(names):
            rows.append({"image": name, "caption": image_captions(i, per_image)[c], "split": split_of[name]})
    rows.sort(key=lambda r: (r["image"] != names[0], 0))  # keep the order stable, image 0 first
    rows.extend(extra_rows)
    fields = ["image", "caption"] + (["split"] if split_column else [])
    with open(root / "captions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if splits_file:
        with open(root / "splits.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["image", "split"])
            w.writerows(split_of.items())
    return root / "captions.csv", names, split_of


# ----------------------------------------------------------------------------- one sample per image


def test_one_sample_per_image_with_all_its_captions(tmp_path):
    path, names, _ = write_multi(tmp_path)
    ds = CaptionedImages(path)
    assert len(ds) == len(names) and ds.targets == list(range(len(names)))
    assert [n.split("/")[-1] for n in ds.samples] == names  # images/ found beside the file
    for i in range(len(ds)):
        assert ds.all_caption_sets[i] == tuple(image_captions(i))  # file order = caption position
        assert ds.caption_sets[i] == ds.all_caption_sets[i] and ds.held_out_sets[i] == ()
        assert ds.captions[i] == image_captions(i)[0]
    img, label = ds[3]
    assert label == 3 and img.size == (8, 8)
    assert ds.missing == [] and ds.uncaptioned == []


def test_caption_subsets_train_and_held_out(tmp_path):
    path, _, _ = write_multi(tmp_path)
    ds = CaptionedImages(path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    assert ds.caption_sets[2] == tuple(image_captions(2)[:3]) and ds.held_out_sets[2] == tuple(
        image_captions(2)[3:]
    )
    rest = CaptionedImages(path, train_captions=(1, 3), held_out_captions="rest")
    assert rest.held_out_sets[0] == tuple(image_captions(0)[p] for p in (0, 2, 4))
    with pytest.raises(ValueError, match="overlap"):
        CaptionedImages(path, train_captions=(0, 1, 2), held_out_captions=(2, 3))
    with pytest.raises(ValueError, match="caption positions"):
        CaptionedImages(path, train_captions="012")


def test_one_caption_per_row_files_still_work(tmp_path):
    from test_data_layouts import CAPTIONS, write_captions

    ds = CaptionedImages(write_captions(tmp_path / "one"))
    assert len(ds) == 3 * len(CAPTIONS) + 1 and all(len(s) == 1 for s in ds.caption_sets)
    assert ds.captions == [s[0] for s in ds.caption_sets] and ds.classes is ds.captions


# ----------------------------------------------------------------------------- targets


def test_mean_target_is_the_normalised_mean_of_the_caption_embeddings(tmp_path):
    path, _, _ = write_multi(tmp_path)
    ds = CaptionedImages(path, train_captions=(0, 1, 2))
    enc = FakeEncoder()
    provider = ds.semantic_distance(model=enc)
    assert isinstance(provider, CaptionSetDistance) and provider.num_ids == len(ds) and enc.calls == 1
    means = []
    for s in ds.caption_sets:
        m = np.mean([enc.vector(c) for c in s], axis=0)
        means.append(m / np.linalg.norm(m))
    means = np.stack(means)
    np.testing.assert_allclose(provider.embeddings.numpy(), means, atol=1e-6)
    ids = torch.arange(len(ds))
    ref = (1 - np.clip(means @ means.T, -1, 1)) / 2
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(provider(ids).numpy(), ref, atol=1e-6)
    # The factory routes captioned data sets to the same provider.
    again = semantic_distance_for(ds, "sentence", sentence_model=enc)
    assert torch.allclose(again(ids), provider(ids))
    built = build_semantic_distance("sentence", caption_sets=ds.caption_sets, sentence_model=enc)
    assert torch.allclose(built(ids), provider(ids))


def test_random_target_changes_with_the_epoch_and_repeats_with_the_seed(tmp_path):
    path, _, _ = write_multi(tmp_path, n=40)
    ds = CaptionedImages(path, target="random", seed=7)
    draws = [ds.caption_choice(e) for e in range(4)]
    assert all(((d >= 0) & (d < 5)).all() for d in draws)
    assert not np.array_equal(draws[0], draws[1]) and not np.array_equal(draws[1], draws[2])
    assert np.array_equal(draws[2], CaptionedImages(path, target="random", seed=7).caption_choice(2))
    assert not np.array_equal(draws[2], CaptionedImages(path, target="random", seed=8).caption_choice(2))
    # (seed, epoch, index) only: a subset of the images draws the same captions.
    assert np.array_equal(draw_captions([5] * 40, 7, 3, ids=[4, 9]), draws[3][[4, 9]])
    assert ds.target_captions(1)[5] == ds.caption_sets[5][draws[1][5]]
    enc = FakeEncoder()
    provider = ds.semantic_distance(model=enc)
    assert provider.target == "random" and provider.epoch == 0
    for epoch in (0, 3, 1):
        provider.set_epoch(epoch)
        want = np.stack([enc.vector(c) for c in ds.target_captions(epoch)])
        np.testing.assert_allclose(provider.embeddings.numpy(), want, atol=1e-6)

    class FakeTrainer:
        epoch = 2

    provider.on_step_start(FakeTrainer())  # a trainer callback
    assert provider.epoch == 2 and np.array_equal(provider.choice(), draws[2])
    mean = provider.as_mean()
    assert (
        mean.target == "mean" and torch.equal(mean.embeddings, mean.mean_embeddings) and provider.epoch == 2
    )


# ----------------------------------------------------------------------------- splits


@pytest.mark.parametrize("how", ["column", "file"])
def test_split_files_as_data_sets_ship_them(tmp_path, how):
    path, names, split_of = write_multi(tmp_path, split_column=how == "column", splits_file=how == "file")
    ds = CaptionedImages(path)
    assert ds.splits == [split_of[n] for n in names]
    assert (ds.split_file is not None) == (how == "file")
    train, test = build_datasets("captions", path)
    assert [names[i] for i in train.targets] == [n for n in names if split_of[n] == "train"]
    # Queries are the test images only; dev stays for tuning (ds.indices_of("dev")).
    assert [names[i] for i in test.targets] == [n for n in names if split_of[n] == "test"]
    assert [names[i] for i in ds.indices_of("dev")] == [n for n in names if split_of[n] == "dev"]


def test_split_file_images_without_captions_are_counted(tmp_path):
    path, names, _ = write_multi(tmp_path, splits_file=True)
    with open(tmp_path / "splits.csv", "a", newline="") as f:
        f.write("nocaption.png,train\n")
    with pytest.warns(UserWarning, match="1 images skipped"):
        ds = CaptionedImages(path)
    assert ds.uncaptioned == ["nocaption.png"] and len(ds) == len(names)
    (tmp_path / "bad_splits.csv").write_text("image,split\n000.png,holdout\n")
    with pytest.raises(ValueError, match="split in"):
        CaptionedImages(path, splits=tmp_path / "bad_splits.csv")


# ----------------------------------------------------------------------------- bad files


def test_missing_images_empty_captions_and_uncaptioned_images(tmp_path):
    extra = [
        {"image": "gone.png", "caption": "a dog that is not there"},
        {"image": "gone.png", "caption": "the same missing dog"},
    ]
    path, names, _ = write_multi(tmp_path, per_image=5, extra_rows=extra)
    # An image with fewer captions than the chosen positions: counted, not half-used.
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "short.png")
    with open(path, "a", newline="") as f:
        csv.writer(f).writerows([["short.png", "one caption only"], ["short.png", "and a second"]])
    ds = CaptionedImages(path)
    assert len(ds.missing) == 1 and ds.missing[0].endswith("gone.png") and len(ds) == len(names) + 1
    with pytest.warns(UserWarning, match="1 images skipped for having no caption at the chosen positions"):
        held = CaptionedImages(path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    assert held.uncaptioned == ["short.png"] and len(held) == len(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = CaptionedImages(path, train_captions=(0, 1))  # short.png has captions 0 and 1
    assert len(ok) == len(names) + 1
    with open(path, "a", newline="") as f:
        csv.writer(f).writerow(["001.png", "   "])
    with pytest.raises(ValueError, match=r"captions.csv:\d+ has an empty caption for image '001.png'"):
        CaptionedImages(path)
    (tmp_path / "none.csv").write_text("image,caption\ngone.png,a caption\n")
    with pytest.raises(ValueError, match="no usable images"):
        CaptionedImages(tmp_path / "none.csv")


def test_conflicting_split_values_and_jsonl_caption_lists(tmp_path):
    import json

    (tmp_path / "images").mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / name)
    p = tmp_path / "c.jsonl"
    p.write_text(
        json.dumps({"image": "a.png", "caption": ["a dog", "a brown dog"]})
        + "\n"
        + json.dumps({"image": "b.png", "caption": "a cat"})
        + "\n"
    )
    ds = CaptionedImages(p)
    assert ds.all_caption_sets == [("a dog", "a brown dog"), ("a cat",)]
    p.write_text(json.dumps({"image": "a.png", "caption": []}) + "\n")
    with pytest.raises(ValueError, match="empty caption list"):
        CaptionedImages(p)
    q = tmp_path / "s.csv"
    q.write_text("image,caption,split\na.png,a dog,train\na.png,a brown dog,test\n")
    with pytest.raises(ValueError, match="is in split 'test' but an earlier row put it in 'train'"):
        CaptionedImages(q)


# ----------------------------------------------------------------------------- held-out evaluation


def test_content_lemmas_and_word_relevance():
    assert content_lemmas("Two dogs are running on the leaves") == ["dog", "run", "leaf"]
    provider = CaptionWordDistance(
        [["a dog runs on the beach"], ["dogs running"], ["a red bus"], ["the of a"]]
    )
    s = 1 - provider(torch.arange(4)).numpy()
    assert s[0, 1] > 0 and s[0, 2] == 0 and s[3, :3].max() == 0 and np.allclose(np.diag(s), 1)


def ref_hp_curve(sims_row, order, k):
    gained = np.cumsum(sims_row[order[:k]])
    ideal = np.cumsum(np.sort(sims_row)[::-1][:k])
    return np.divide(gained, ideal, out=np.zeros(k), where=ideal > 0)


def slow_reference(qz, dz, qi, di, sim_fn, k, distance):
    """Loops: rank every query (stable: ties by database index), HP@1..k, trapezoid, nDCG@k."""
    ahp, ndcg = [], []
    for a in range(len(qz)):
        if distance == "hamming":
            dist = [int(np.sum((qz[a] > 0.5) != (dz[b] > 0.5))) for b in range(len(dz))]
        elif distance == "cosine":
            qa = qz[a].astype(np.float64)
            dist = [
                -float(qa @ dz[b] / (np.linalg.norm(qa) * np.linalg.norm(dz[b].astype(np.float64))))
                for b in range(len(dz))
            ]
        else:
            dist = [
                float(np.sum(np.abs(qz[a].astype(np.float32) - dz[b].astype(np.float32))))
                for b in range(len(dz))
            ]
        order = sorted(range(len(dz)), key=lambda b: (dist[b], b))
        sims = np.array([sim_fn(qi[a], di[b]) for b in range(len(dz))])
        curve = ref_hp_curve(sims, np.array(order), k)
        ahp.append(sum((curve[i] + curve[i + 1]) / 2 for i in range(k - 1)) / k)
        dcg = sum(sims[order[i]] / math.log2(i + 2) for i in range(k))
        best = sorted(sims, reverse=True)
        idcg = sum(best[i] / math.log2(i + 2) for i in range(k))
        ndcg.append(dcg / idcg if idcg > 0 else 0.0)
    return float(np.mean(ahp)), float(np.mean(ndcg))


def tf_idf_cosine(lemma_docs):
    """TF-IDF cosine written out: raw counts x (ln((1 + n) / (1 + df)) + 1), L2 rows."""
    vocab = sorted({w for doc in lemma_docs for w in doc})
    n = len(lemma_docs)
    df = {w: sum(w in doc for doc in lemma_docs) for w in vocab}
    rows = []
    for doc in lemma_docs:
        v = np.array([doc.count(w) * (math.log((1 + n) / (1 + df[w])) + 1) for w in vocab])
        rows.append(v / np.linalg.norm(v) if np.linalg.norm(v) > 0 else v)
    return lambda i, j: 1.0 if i == j else float(np.dot(rows[i], rows[j]))


def test_held_out_evaluation_matches_a_slow_reference(tmp_path):
    path, _, _ = write_multi(tmp_path, n=30)
    ds = CaptionedImages(path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    enc = FakeEncoder()
    rng = np.random.RandomState(0)
    q_ids, db_ids = np.arange(8), np.arange(8, 30)
    qz, dz = rng.rand(8, 8).astype(np.float32), rng.rand(22, 8).astype(np.float32)
    dz[5] = dz[3]  # exact ties in both rankings
    sentence = caption_relevance(ds.held_out_sets, "sentence", model=enc)
    words = caption_relevance(ds.held_out_sets, "words")
    means = []
    for s in ds.held_out_sets:
        m = np.mean([enc.vector(c) for c in s], axis=0)
        means.append(m / np.linalg.norm(m))

    def sent(i, j):
        return 1.0 if i == j else (1 + float(np.clip(means[i] @ means[j], -1, 1))) / 2

    word = tf_idf_cosine([[w for c in s for w in content_lemmas(c)] for s in ds.held_out_sets])
    k = 6
    m = evaluate_caption_codes(
        qz, dz, q_ids, db_ids, relevance={"sentence": sentence, "words": words}, k=k, return_curves=True
    )
    assert m["k"] == k and m["relevances"] == ["sentence", "words"]
    for name, fn in (("sentence", sent), ("words", word)):
        for suffix, dist in (("", "hamming"), ("_continuous", "l1")):
            want_ahp, want_ndcg = slow_reference(qz, dz, q_ids, db_ids, fn, k, dist)
            assert m[f"mAHP@k{suffix} [{name}]"] == pytest.approx(want_ahp, abs=1e-6), (name, suffix)
            assert m[f"nDCG@k{suffix} [{name}]"] == pytest.approx(want_ndcg, abs=1e-6), (name, suffix)
            assert len(m[f"hp_curve{suffix} [{name}]"]) == k
        # The graded mAHP@k is the library's own (the hierarchy metrics' definition).
        provider = sentence if name == "sentence" else words
        lib = mahp_at_k(qz, dz, q_ids, db_ids, semantic_distance=provider, k=k)
        assert m[f"mAHP@k [{name}]"] == pytest.approx(lib, abs=1e-12)
    # Relevance given by name: built from the held-out captions.
    by_name = evaluate_caption_codes(
        qz, dz, q_ids, db_ids, relevance="words", held_out_captions=ds.held_out_sets, k=k
    )
    assert by_name["mAHP@k [words]"] == pytest.approx(m["mAHP@k [words]"], abs=1e-12)
    assert set(by_name) == {
        "k",
        "relevances",
        "bit_balance",
        "quantization_error",
        "mAHP@k [words]",
        "nDCG@k [words]",
        "mAHP@k_continuous [words]",
        "nDCG@k_continuous [words]",
    }
    with pytest.raises(ValueError, match="needs held_out_captions"):
        evaluate_caption_codes(qz, dz, q_ids, db_ids, relevance="sentence")


def test_caption_scores_of_real_vectors_by_cosine_match_the_slow_reference(tmp_path):
    path, _, _ = write_multi(tmp_path, n=24)
    ds = CaptionedImages(path, train_captions=(0, 1, 2), held_out_captions=(3, 4))
    words = caption_relevance(ds.held_out_sets, "words")
    word = tf_idf_cosine([[w for c in s for w in content_lemmas(c)] for s in ds.held_out_sets])
    rng = np.random.RandomState(3)
    q_ids, db_ids = np.arange(6), np.arange(6, 24)
    for dtype in (np.float32, np.float64):
        qx, dx = rng.randn(6, 5).astype(dtype), 3.0 * rng.randn(18, 5).astype(dtype)  # any sign, any scale
        m = evaluate_caption_embeddings(qx, dx, q_ids, db_ids, relevance={"words": words}, k=5)
        want_ahp, want_ndcg = slow_reference(qx, dx, q_ids, db_ids, word, 5, "cosine")
        assert m["mAHP@k [words]"] == pytest.approx(want_ahp, abs=1e-6)
        assert m["nDCG@k [words]"] == pytest.approx(want_ndcg, abs=1e-6)
        # Cosine is scale-free per row.
        scaled = evaluate_caption_embeddings(
            qx * 7.0, dx * rng.uniform(0.1, 5, (18, 1)), q_ids, db_ids, relevance={"words": words}, k=5
        )
        assert scaled["mAHP@k [words]"] == pytest.approx(m["mAHP@k [words]"], abs=1e-9)
    # Ranked by the relevance's own vectors, the ranking is the ideal one: HP@i = 1 for every i, so
    # the trapezoid over HP@1..HP@k with dx = 1/k (Barz & Denzler's mAHP) is (k - 1) / k; nDCG is 1.
    tfidf = words.vectors.toarray()
    ideal = evaluate_caption_embeddings(
        tfidf[q_ids] + 0.0, tfidf[db_ids], q_ids, db_ids, relevance={"words": words}, k=5
    )
    assert ideal["mAHP@k [words]"] == pytest.approx(4 / 5) and ideal["nDCG@k [words]"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="all-zero row"):
        evaluate_caption_embeddings(np.zeros((6, 5)), dx, q_ids, db_ids, relevance={"words": words}, k=5)


def test_ndcg_ideal_ranking_is_one_and_self_exclusion():
    rng = np.random.RandomState(1)
    emb = rng.randn(10, 4)
    provider = CaptionSetDistance(embeddings=emb, counts=[1] * 10)
    codes = (rng.rand(10, 16) > 0.5).astype(np.float32)
    ids = np.arange(10)
    full = ndcg_at_k(codes, codes, ids, ids, relevance=provider, k=4, ref_includes_query=True, per_query=True)
    assert full.shape == (10,) and ((full > 0) & (full <= 1 + 1e-12)).all()
    # A ranking by relevance itself (continuous codes = the embeddings' similarity order) scores 1.
    sims = 1 - provider(torch.arange(10)).numpy()
    one_query = np.argsort(-sims[0], kind="stable")
    db_codes = np.zeros((10, 1), np.float32)
    db_codes[one_query, 0] = np.arange(10) / 10
    score = ndcg_at_k(db_codes[:1], db_codes, ids[:1], ids, relevance=provider, k=5, distance="l1")
    assert score == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the training path


@pytest.mark.parametrize("target", ["mean", "random"])
def test_the_trainer_targets_all_training_captions_of_each_image(tmp_path, target):
    from pml_shrewd.training import CaptionRetrievalEvaluator, RetrievalEvaluator, TrainConfig, build_run

    csv_path, names, _ = write_multi(tmp_path / "cap", n=12, split_column=True)
    config = TrainConfig(
        dataset="captions", data_path=str(csv_path), semantic="sentence", backbone="test_resnet",
        num_bits=8, image_size=16, small_images=True, batch_size=4, epochs=1, num_workers=0,
        mixed_precision="no", output_dir=str(tmp_path / "run"), caption_target=target,
        train_captions=[0, 1, 2], held_out_captions=[3, 4],
    )  # fmt: skip
    run = build_run(config)
    base = run["train_set"].base
    assert len(run["train_set"]) == 8 and all(len(c) == 3 for c in base.caption_sets)
    assert all(len(c) == 2 for c in base.held_out_sets)
    provider = run["loss_fn"].semantic_distance
    assert isinstance(provider, CaptionSetDistance)  # image ids, not the first caption of each image
    expected = build_semantic_distance("sentence", caption_sets=base.caption_sets)
    torch.testing.assert_close(provider.mean_embeddings, expected.mean_embeddings)
    # Drawn afresh each epoch by the provider itself (random) or fixed (mean).
    assert (provider in run["callbacks"]) == (target == "random")
    # Scored by the held-out captions only, never by the training target.
    evaluator = run["evaluator"]
    assert isinstance(evaluator, CaptionRetrievalEvaluator) and set(evaluator.relevances) == {
        "sentence",
        "words",
    }
    held = build_semantic_distance("sentence", caption_sets=base.held_out_sets)
    torch.testing.assert_close(evaluator.relevances["sentence"].mean_embeddings, held.mean_embeddings)
    assert evaluator.relevances["words"].caption_sets == [tuple(s) for s in base.held_out_sets]
    # Without held-out captions the run scores with its own provider (the mean target).
    config.held_out_captions = None
    plain = build_run(config)
    assert isinstance(plain["evaluator"], RetrievalEvaluator)
    assert plain["evaluator"].semantic_distance.target == "mean"
