"""recipes/cifar100_ablation.py: five variants, one recipe, the orderings read off their metrics."""

import json
import sys

import pytest
from conftest import load_recipe
from test_data_layouts import write_npz
from test_training_trainer import TINY

ablation = load_recipe("cifar100_ablation")


def _write_metrics(out, variant, mahp, cont, k=250):
    (out / variant).mkdir(parents=True)
    metrics = {"k": k, "mAHP@k": mahp, "mAHP@k_continuous": cont, "mAP": 0.5, "mAP_continuous": 0.5,
               "bit_balance": 0.01, "quantization_error": 0.1, "epochs_completed": 3}  # fmt: skip
    (out / variant / "metrics.json").write_text(json.dumps(metrics))


def test_summary_checks_follow_the_figures(tmp_path):
    figures = {"cls": (0.60, 0.62), "sim": (0.55, 0.60), "kl_cls": (0.58, 0.59), "shrewd": (0.65, 0.66),
               "shred": (0.59, 0.60)}  # fmt: skip
    for variant, (mahp, cont) in figures.items():
        _write_metrics(tmp_path, variant, mahp, cont)
    summary = ablation.summarise(tmp_path, list(figures), {"cls": 10.0}, k=250)
    assert summary["rows"]["sim"]["drop"] == pytest.approx(0.05)
    # The CPU benchmark's checker (pml_shrewd.benchmarking.check_claims), the same rules.
    assert summary["checks"] == {
        "SHREWD binary mAHP@k > L_cls only": True,
        "SHREWD binary mAHP@k >= best baseline + 0.03": True,  # 0.65 vs L_cls 0.60
        "SHRED binary mAHP@k > L_cls only": False,  # 0.59 < 0.60
        "SHRED binary mAHP@k >= best baseline + 0.03": False,
        "L_sim alone below SHREWD (mAHP@k)": True,
        "binarisation drop smaller with L_KL (L_sim vs SHREWD)": True,  # 0.01 < 0.05
        "binarisation drop smaller with L_KL (L_cls vs L_KL + L_cls)": True,  # 0.01 < 0.02
    }
    table = ablation.markdown(summary)
    assert "| L_cls | 0.6000 | 0.6200 | +0.0200 |" in table
    assert "- SHRED binary mAHP@k > L_cls only: fails (SHRED 0.5900 vs L_cls 0.6000 (-0.0100))" in table
    _write_metrics(tmp_path, "triplet", 0.62, 0.63)
    _write_metrics(tmp_path, "contrastive", 0.64, 0.64)
    checks = ablation.summarise(tmp_path, ["shrewd", "shred", "triplet", "contrastive"], {}, k=250)["checks"]
    assert checks == {
        "SHREWD binary mAHP@k > best PML baseline": True,  # 0.65 > contrastive 0.64
        "SHREWD binary mAHP@k >= best baseline + 0.03": False,
        "SHRED binary mAHP@k > best PML baseline": False,  # 0.59 < 0.64
        "SHRED binary mAHP@k >= best baseline + 0.03": False,
    }
    # Only the checks whose variants ran.
    assert set(ablation.summarise(tmp_path, ["sim", "shrewd"], {}, k=250)["checks"]) == {
        "L_sim alone below SHREWD (mAHP@k)",
        "binarisation drop smaller with L_KL (L_sim vs SHREWD)",
    }
    with pytest.raises(KeyError, match="k=250, not 100"):
        ablation.summarise(tmp_path, ["cls"], {}, k=100)


def test_ablation_trains_variants_side_by_side(tmp_path):
    data = write_npz(tmp_path / "c.npz")
    out = tmp_path / "abl"
    rc = ablation.main(["--data", str(data), "--out", str(out), "--variants", "cls", "shrewd", "--parallel", "2",
                        "--k", "20", "--", "--dataset", "npz", *TINY, "--epochs", "1"])  # fmt: skip
    assert rc == 0
    summary = json.loads((out / "ablation.json").read_text())
    for variant in ("cls", "shrewd"):
        metrics = json.loads((out / variant / "metrics.json").read_text())
        assert summary["rows"][variant]["mAHP@k"] == metrics["mAHP@k"] and metrics["k"] == 20
        assert json.loads((out / variant / "train_config.json").read_text())["variant"] == variant
    shrewd, cls = summary["rows"]["shrewd"]["mAHP@k"], summary["rows"]["cls"]["mAHP@k"]
    assert summary["checks"]["SHREWD binary mAHP@k > L_cls only"] == (shrewd > cls)
    assert (out / "table.md").read_text().startswith("| variant | mAHP@20 |")


def test_a_failing_variant_names_its_log(tmp_path):
    with pytest.raises(RuntimeError, match=r"variant 'sim' failed .*sim/train.log"):
        ablation.main(["--data", str(tmp_path / "missing.npz"), "--out", str(tmp_path / "o"), "--variants", "sim",
                       "--", "--dataset", "npz", *TINY])  # fmt: skip


def test_a_failure_stops_the_variants_still_running(tmp_path, monkeypatch):
    # "sim" fails at once (no data); "cls" would sleep for a minute: it must be stopped, not orphaned.
    started = {}
    real_popen = ablation.subprocess.Popen

    def popen(cmd, **kw):
        variant = cmd[cmd.index("--variant") + 1]
        code = "import time; time.sleep(60)" if variant == "cls" else "raise SystemExit(3)"
        started[variant] = real_popen([sys.executable, "-c", code], **kw)
        return started[variant]

    monkeypatch.setattr(ablation.subprocess, "Popen", popen)
    with pytest.raises(RuntimeError, match=r"variant 'sim' failed \(exit 3\)"):
        ablation.run_variants(["cls", "sim"], "data", str(tmp_path), parallel=2, train_args=[])
    assert started["cls"].poll() is not None  # terminated
