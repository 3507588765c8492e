"""recipes/cifar100_ablation.py: five variants, one recipe, the orderings read off their metrics."""

import json
import sys
from pathlib import Path

import pytest
from test_data_layouts import write_npz
from test_training_trainer import TINY

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import cifar100_ablation as ablation  # noqa: E402


def _write_metrics(out, variant, mahp, cont, k=250):
    (out / variant).mkdir(parents=True)
    metrics = {f"mAHP@{k}": mahp, f"mAHP@{k}_continuous": cont, "mAP": 0.5, "mAP_continuous": 0.5,
               "bit_balance": 0.01, "quantization_error": 0.1, "epochs_completed": 3}  # fmt: skip
    (out / variant / "metrics.json").write_text(json.dumps(metrics))


def test_summary_checks_follow_the_figures(tmp_path):
    figures = {"cls": (0.60, 0.62), "sim": (0.55, 0.60), "kl_cls": (0.58, 0.59), "shrewd": (0.65, 0.66),
               "shred": (0.59, 0.60)}  # fmt: skip
    for variant, (mahp, cont) in figures.items():
        _write_metrics(tmp_path, variant, mahp, cont)
    summary = ablation.summarise(tmp_path, list(figures), {"cls": 10.0}, k=250)
    assert summary["rows"]["sim"]["drop"] == pytest.approx(0.05)
    assert summary["checks"] == {
        "SHREWD above L_cls": True,
        "SHRED above L_cls": False,  # 0.59 < 0.60
        "L_sim below SHREWD": True,
        "drop smaller with L_KL (SHREWD vs L_sim)": True,  # 0.01 < 0.05
        "drop smaller with L_KL (L_KL + L_cls vs L_cls)": True,  # 0.01 < 0.02
    }
    table = ablation.markdown(summary)
    assert "| L_cls | 0.6000 | 0.6200 | +0.0200 |" in table and "- SHRED above L_cls: fails" in table
    _write_metrics(tmp_path, "triplet", 0.62, 0.63)
    _write_metrics(tmp_path, "contrastive", 0.64, 0.64)
    checks = ablation.summarise(tmp_path, ["shrewd", "shred", "triplet", "contrastive"], {}, k=250)["checks"]
    assert checks == {
        "SHREWD above the best PML baseline (PML ContrastiveLoss)": True,  # 0.65 > 0.64
        "SHRED above the best PML baseline (PML ContrastiveLoss)": False,  # 0.59 < 0.64
    }
    # Only the checks whose variants ran.
    assert set(ablation.summarise(tmp_path, ["sim", "shrewd"], {}, k=250)["checks"]) == {
        "L_sim below SHREWD",
        "drop smaller with L_KL (SHREWD vs L_sim)",
    }
    with pytest.raises(KeyError, match="no mAHP@100"):
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
        assert summary["rows"][variant]["mAHP"] == metrics["mAHP@20"]
        assert json.loads((out / variant / "train_config.json").read_text())["variant"] == variant
    assert summary["checks"] == {
        "SHREWD above L_cls": summary["rows"]["shrewd"]["mAHP"] > summary["rows"]["cls"]["mAHP"]
    }
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
