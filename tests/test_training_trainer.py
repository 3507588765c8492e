"""Trainer: one short run per recipe path, loss decrease, exact resume, config validation."""

import copy
import json
import os

import numpy as np
import pytest
import torch
from test_data_layouts import write_captions, write_folder, write_npz

from pml_shrewd.cli import main
from pml_shrewd.data import class_balanced_order
from pml_shrewd.training import TrainConfig, Trainer, gather_with_grad

RECIPES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes", "configs")
TINY = [
    "--backbone", "test_resnet", "--bits", "16", "--image-size", "16", "--epochs", "2", "--batch-size", "16",
    "--optimizer", "adamw", "--lr", "1e-3", "--warmup-steps", "0", "--no-download", "--no-pretrained",
    "--mixed-precision", "no", "--num-workers", "0", "--eval-every", "1", "--hp-k", "20",
    "--pretrained-file", "none",  # a recipe's weights file is for its own backbone
]  # fmt: skip


def tiny_config(data, out, **kw):
    base = dict(
        data_path=str(data), backbone="test_resnet", num_bits=16, small_images=True, image_size=16, epochs=2,
        batch_size=16, output_dir=str(out), mixed_precision="no", hp_k=20, eval_every=0, lr=1e-3, num_workers=0,
    )  # fmt: skip
    return TrainConfig(**{**base, **kw})


def run_recipe(name, data, dataset, out, *extra):
    rc = main(["train", "--config", os.path.join(RECIPES, f"{name}.json"), "--data", str(data),
               "--dataset", dataset, "--output-dir", str(out), *TINY, *extra])  # fmt: skip
    assert rc == 0
    with open(out / "metrics.json") as f:
        metrics = json.load(f)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return metrics, log


def check_metrics(metrics, k=20, labels=True):
    assert metrics["k"] == k
    keys = (
        ("mAP", "mAHP@k", "mAP_continuous", "mAHP@k_continuous")
        if labels
        else ("mAHP@k", "mAHP@k_continuous")
    )
    for key in keys:
        assert 0.0 <= metrics[key] <= 1.0, key


def test_recipe_cifar100_shred_on_npz(tmp_path):
    metrics, log = run_recipe("cifar100_shred", write_npz(tmp_path / "c.npz"), "npz", tmp_path / "run")
    check_metrics(metrics)
    assert [r["epoch"] for r in log if "epoch" in r] == [1, 2] and "metrics" in log[0]
    assert metrics["steps"] == 2 * (48 // 16) and metrics["skipped_images"] == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    # SHRED's classifier belongs to the loss (as PML's losses with parameters own them).
    assert saved["train"]["variant"] == "shred" and len(saved["classes"]) == 4
    assert saved["train"]["gamma"] == 0.1 and saved["train"]["rho"] == 2.0  # the recipe's paper settings


def test_recipe_cifar100_shrewd_and_imagenet_wnid_folders(tmp_path):
    metrics, _ = run_recipe("cifar100_shrewd", write_npz(tmp_path / "c.npz"), "npz", tmp_path / "a")
    check_metrics(metrics)
    data = write_folder(tmp_path / "inet")
    metrics, _ = run_recipe("imagenet_shrewd", data, "folder", tmp_path / "b", "--max-db-samples", "24")
    check_metrics(metrics)
    assert metrics["train_samples"] == 32 and metrics["test_samples"] == 12


def test_recipe_captions_counts_corrupt_and_missing(tmp_path):
    data = write_captions(tmp_path / "cap", copies=6)
    # The image path (the recipe's default trains a head on cached features).
    metrics, log = run_recipe(
        "captions_shrewd", data, "captions", tmp_path / "run", "--epochs", "1", "--no-cache-features",
        "--no-freeze-backbone", "--no-standardize-features",
    )  # fmt: skip
    check_metrics(metrics, labels=False)
    # Every image is its own label: mAP and P@k would always be 0, so they are absent, and it says why.
    assert not {"mAP", "P@k", "mAP@k", "mAP_continuous"} & set(metrics) and "captioned" in metrics["absent"]
    assert metrics["missing_images"] == 1 and metrics["missing_examples"][0].endswith("missing.png")
    # The corrupt image is skipped wherever it falls (train batch or test queries) and counted once.
    assert metrics["skipped_images"] == 1 and metrics["skipped_examples"][0].endswith("corrupt.jpg")


def test_cached_features_count_the_images_they_could_not_read(tmp_path):
    # The recipe's default path: a head on cached backbone features. The corrupt image gets no
    # feature row; the run must still count it, as the image path does.
    data = write_captions(tmp_path / "cap", copies=6)
    metrics, _ = run_recipe("captions_shrewd", data, "captions", tmp_path / "run", "--epochs", "1")
    assert metrics["skipped_images"] == 1 and metrics["skipped_examples"][0].endswith("corrupt.jpg")
    assert metrics["missing_images"] == 1


def test_batches_without_two_readable_images_are_skipped_and_counted(tmp_path, capsys):
    # A captions run (sentence-embedding distances, BatchNorm head) whose first batch is all
    # corrupt images and whose second keeps one readable image: both skipped, training goes on.
    data = write_captions(tmp_path / "cap", copies=4)
    config = tiny_config(
        data, tmp_path / "run", dataset="captions", semantic="sentence", batch_size=4, epochs=1,
        batch_norm=True, test_fraction=0.25, hp_k=10,
    )  # fmt: skip
    trainer = Trainer.from_config(config)
    order = trainer.epoch_indices(0)
    corrupt = order[:4] + order[4:7]
    for i in corrupt:
        with open(trainer.train_set.sample_name(i), "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n truncated")
    bad = {trainer.train_set.sample_name(i) for i in corrupt} | {str(data.parent / "img" / "corrupt.jpg")}
    readable_in_skipped = sum(trainer.train_set.sample_name(i) not in bad for i in order[:8])
    metrics = trainer.fit()
    assert metrics["steps"] == trainer.steps_per_epoch and metrics["skipped_batches"] == 2
    assert metrics["skipped_batch_images"] == readable_in_skipped <= 1
    assert metrics["skipped_images"] == len(bad) and set(metrics["skipped_examples"]) == bad
    check_metrics(metrics, k=10, labels=False)
    (record,) = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()][:1]
    assert record["skipped_batches"] == 2 and record["train_loss"] is not None
    assert "skipped_batches=2" in capsys.readouterr().err  # the progress bar shows the count


def test_loss_decreases_on_a_fixed_batch(tmp_path):
    trainer = Trainer.from_config(
        tiny_config(write_npz(tmp_path / "d.npz", n_train=64), tmp_path / "run", lr=3e-3, epochs=4)
    )
    batch = [trainer.train_set[i] for i in range(32)]
    images = torch.stack([x for x, _ in batch])
    labels = torch.tensor([y for _, y in batch])

    def objective():
        trainer.model.eval()
        torch.manual_seed(0)  # the same Beta(alpha, beta) target sample each time
        with torch.no_grad():
            return float(trainer.loss_fn(trainer.model(images), labels))

    before = objective()
    trainer.fit()
    after = objective()
    print("objective before/after", before, after)
    assert after < 0.8 * before, (before, after)


def test_freeze_backbone_trains_the_head_only(tmp_path):
    trainer = Trainer.from_config(
        tiny_config(
            write_npz(tmp_path / "d.npz"), tmp_path / "run", freeze_backbone=True, epochs=1, batch_norm=True
        )
    )
    model = trainer.accelerator.unwrap_model(trainer.model)
    backbone_before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = {k: v.clone() for k, v in model.head.state_dict().items()}
    trainer.fit()
    # Weights and BatchNorm statistics of the backbone untouched; the head trained.
    assert all(torch.equal(v, model.backbone.state_dict()[k]) for k, v in backbone_before.items())
    assert not all(torch.equal(v, model.head.state_dict()[k]) for k, v in head_before.items())


def test_resume_after_kill_gives_identical_weights(tmp_path):
    data = write_npz(tmp_path / "d.npz")
    kw = dict(checkpoint_every_steps=2, checkpoint_every=0, variant="shred")
    full = Trainer.from_config(tiny_config(data, tmp_path / "full", **kw))
    full.fit()
    # "Killed" after step 4 (mid-epoch 2, right after a checkpoint), then resumed from it.
    killed = Trainer.from_config(tiny_config(data, tmp_path / "resumed", max_steps=4, **kw))
    killed.fit()
    assert os.path.realpath(tmp_path / "resumed" / "checkpoints" / "last").endswith("step-00000004")
    resumed = Trainer.from_config(tiny_config(data, tmp_path / "resumed", **kw))
    resumed.fit(resume=True)
    assert resumed.step == full.step == 6
    a = full.accelerator.unwrap_model(full.model).state_dict()
    b = resumed.accelerator.unwrap_model(resumed.model).state_dict()
    k = killed.accelerator.unwrap_model(killed.model).state_dict()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not all(torch.equal(a[n], k[n]) for n in a)  # the killed run really stopped early
    assert full.optimizer.state_dict()["state"].keys() == resumed.optimizer.state_dict()["state"].keys()
    assert not any(n.endswith(".tmp") for n in os.listdir(tmp_path / "resumed" / "checkpoints"))


def test_gather_with_grad_is_identity_on_one_process():
    from accelerate import Accelerator

    x = torch.randn(5, 3, requires_grad=True)
    y = gather_with_grad(Accelerator(cpu=True), x)
    assert y is x


def test_config_roundtrip_and_validation(tmp_path):
    cfg = TrainConfig(backbone="test_resnet", num_bits=32, variant="shred")
    cfg.save(tmp_path / "c.json")
    again = TrainConfig.load(tmp_path / "c.json", epochs=3)
    assert again.num_bits == 32 and again.epochs == 3 and again.variant == "shred"
    for bad in (dict(variant="magic"), dict(batch_size=1), dict(lr=0), dict(alpha=0), dict(num_bits=0)):
        with pytest.raises(ValueError):
            TrainConfig(**bad)
    with pytest.raises(ValueError, match="unknown fields"):
        TrainConfig.from_dict({"bitz": 3})


@pytest.mark.parametrize("variant", ["shrewd", "shred", "sim"])
def test_config_reaches_the_loss(variant):
    from pml_shrewd import HierarchyDistance
    from pml_shrewd.losses import build_objective

    cfg = TrainConfig(variant=variant, gamma=0.3, rho=1.5, balance_levels=True, sim_error="absolute")
    loss_fn = build_objective(
        variant, HierarchyDistance.cifar10(), embedding_size=16, num_classes=10, **cfg.objective_settings()
    )
    assert (loss_fn.gamma, loss_fn.rho, loss_fn.balance_levels, loss_fn.error) == (0.3, 1.5, True, "absolute")
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))).balance_levels is True


@pytest.mark.parametrize("variant", ["shrewd", "shred", "sim"])
def test_semantic_power_reshapes_the_training_distances_only(variant):
    from pml_shrewd import HierarchyDistance, PowerDistance
    from pml_shrewd.losses import build_objective

    tree = HierarchyDistance.cifar10()
    kw = dict(embedding_size=16, num_classes=10)
    loss_fn = build_objective(variant, tree, semantic_power=0.5, **kw)
    assert isinstance(loss_fn.semantic_distance, PowerDistance)
    torch.testing.assert_close(loss_fn.semantic_distance.matrix(), tree.matrix().sqrt())
    # The default trains on the provider itself.
    assert build_objective(variant, tree, **kw).semantic_distance is tree
    # The deprecated config-based builder gives the same loss.
    from pml_shrewd.models import HashingModel
    from pml_shrewd.training import build_objective as old_builder

    model = HashingModel("test_resnet", num_bits=16, num_classes=10, pretrained=False)
    with pytest.warns(DeprecationWarning, match="losses.build_objective"):
        old = old_builder(TrainConfig(variant=variant, semantic_power=0.5), tree, model)
    torch.testing.assert_close(old.semantic_distance.matrix(), tree.matrix().sqrt())
    with pytest.raises(ValueError, match="semantic_power"):
        TrainConfig(semantic_power=0.0)


def test_class_balanced_order_groups_same_labels_reproducibly():
    rng = np.random.RandomState(0)
    labels = rng.randint(0, 7, size=203)
    for m, length in [(2, 200), (4, 200), (4, 1000), (3, 999)]:
        order = class_balanced_order(labels, m, length, seed=[1, 2])
        assert len(order) == length and order.min() >= 0 and order.max() < len(labels)
        # Runs of m indices share a label: every batch of k*m holds whole groups.
        runs = labels[order[: length // m * m]].reshape(-1, m)
        assert (runs == runs[:, :1]).all()
        first_pass = min(length, sum(c // m * m for c in np.bincount(labels))) // m * m
        assert len(set(order[:first_pass].tolist())) == first_pass  # no repeats within a pass
        np.testing.assert_array_equal(order, class_balanced_order(labels, m, length, seed=[1, 2]))
        assert not np.array_equal(order, class_balanced_order(labels, m, length, seed=[1, 3]))


def test_class_balanced_order_rejects_bad_input_and_warns_on_small_classes():
    with pytest.raises(ValueError, match="samples_per_class"):
        class_balanced_order([0, 1], 0, 2, seed=0)
    with pytest.raises(ValueError, match="no class has"):
        class_balanced_order([0, 1, 2], 2, 4, seed=0)
    with pytest.warns(UserWarning, match="1 classes have fewer than 2"):
        order = class_balanced_order([0, 0, 1, 1, 2], 2, 4, seed=0)
    assert 4 not in order.tolist()
    with pytest.raises(ValueError, match="divides batch_size"):
        TrainConfig(batch_size=16, samples_per_class=3)
    with pytest.raises(ValueError, match="samples_per_class"):
        TrainConfig(batch_size=16, samples_per_class=1)


def test_trainer_class_balanced_batches_train_and_keep_steps(tmp_path):
    config = tiny_config(write_npz(tmp_path / "d.npz"), tmp_path / "run", samples_per_class=4, epochs=1)
    trainer = Trainer.from_config(config)
    labels = np.asarray(trainer.train_set.targets)
    order = trainer.epoch_indices(0)
    assert len(order) == trainer.steps_per_epoch * config.batch_size
    for s in range(trainer.steps_per_epoch):
        counts = np.bincount(labels[order[s * 16 : (s + 1) * 16]])
        assert (counts % 4 == 0).all(), counts
    assert order != trainer.epoch_indices(1)
    metrics = trainer.fit()
    assert metrics["steps"] == trainer.steps_per_epoch and np.isfinite(metrics["mAP"])


def test_class_balanced_batches_need_class_labels(tmp_path):
    data = write_captions(tmp_path / "cap", copies=4)
    config = tiny_config(data, tmp_path / "run", dataset="captions", semantic="sentence", batch_size=4,
                         samples_per_class=2, test_fraction=0.25, hp_k=10)  # fmt: skip
    with pytest.raises(ValueError, match="captioned data"):
        Trainer.from_config(config)


def test_resume_refuses_a_missing_checkpoint_and_says_where_it_resumes(tmp_path, capsys):
    data = write_npz(tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match="no checkpoint at .*without --resume to start fresh"):
        Trainer.from_config(tiny_config(data, tmp_path / "fresh")).fit(resume=True)
    Trainer.from_config(tiny_config(data, tmp_path / "run", max_steps=4)).fit()  # stops in epoch 2
    last = os.path.realpath(tmp_path / "run" / "checkpoints" / "last")  # the epoch-1 checkpoint
    capsys.readouterr()
    Trainer.from_config(tiny_config(data, tmp_path / "run")).fit(resume=True)
    out = capsys.readouterr().out
    assert f"resuming from {last} at epoch 1 step 3" in out
    # One summary line per epoch on the console (the record itself is in log.jsonl).
    assert "epoch 2/2  step 6  loss " in out


def test_saved_paths_are_absolute_so_evaluate_works_from_elsewhere(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_npz(tmp_path / "d.npz")
    config = tiny_config("d.npz", "run", dataset="npz", epochs=1)
    assert config.data_path == str(tmp_path / "d.npz")
    Trainer.from_config(config).fit()
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["data_path"] == str(tmp_path / "d.npz")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--k", "20"]) == 0
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        Trainer.from_config(tiny_config(tmp_path / "missing.npz", tmp_path / "r2", dataset="npz"))


def test_workers_default_to_the_cores_and_warm_up_fits_the_run(tmp_path):
    from pml_shrewd.training.builders import default_num_workers

    data = write_npz(tmp_path / "d.npz")
    config = tiny_config(data, tmp_path / "run", num_workers=None, warmup_steps=1000, epochs=1)
    with pytest.warns(UserWarning, match="warmup_steps 1000 is over a tenth of the run's 3 steps"):
        trainer = Trainer.from_config(config)
    assert trainer.num_workers == default_num_workers() == max(0, min(8, (os.cpu_count() or 1) - 1))
    assert trainer.scheduler.get_last_lr()[0] == config.lr  # no ramp from 1/1000 of it
    trainer.fit()
    assert trainer.scheduler.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)  # and it decays to the end


def test_queries_whose_class_is_not_in_the_database_are_reported():
    from pml_shrewd.training.evaluation import warn_unmatched_queries

    with pytest.warns(UserWarning, match="2 of 4 queries have labels that no database item has"):
        assert warn_unmatched_queries(np.array([0, 1, 5, 5]), np.array([0, 1, 1, 2])) == 2
    assert warn_unmatched_queries(np.array([0, 1]), np.array([1, 0])) == 0


@pytest.mark.parametrize("optimizer", ["adamw", "adam", "sgd"])
def test_the_trainers_optimizer_steps_bitwise_as_torchs_per_parameter_loop(optimizer, tmp_path):
    # foreach=True is a speed choice only: the same update as torch's CPU default, bit for bit.
    from pml_shrewd.data import FeatureSamples

    torch.manual_seed(0)
    x, y = torch.randn(32, 6), torch.arange(32) % 4
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.BatchNorm1d(16), torch.nn.Linear(16, 8))
    reference_model = copy.deepcopy(model)
    config = TrainConfig(optimizer=optimizer, lr=0.05, weight_decay=0.01, steps=20, batch_size=8,
                         output_dir=str(tmp_path), mixed_precision="no")  # fmt: skip
    trainer = Trainer(model, torch.nn.Identity(), FeatureSamples(x, y, list("abcd")), config=config)
    kind = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
    extra = dict(momentum=0.9, nesterov=True) if optimizer == "sgd" else {}
    reference = kind(reference_model.parameters(), lr=0.05, weight_decay=0.01, foreach=False, **extra)
    assert all(g["foreach"] for g in trainer.optimizer.param_groups)
    for step in range(20):
        grads = [torch.randn_like(p) * 10.0 ** -(step % 4) for p in model.parameters()]
        for opt, params in (
            (trainer.optimizer, model.parameters()),
            (reference, reference_model.parameters()),
        ):
            for p, g in zip(params, grads):
                p.grad = g.clone()
            opt.step()
    for a, b in zip(model.parameters(), reference_model.parameters()):
        assert torch.equal(a, b)
