"""The pml-shrewd command line: train -> evaluate -> index -> search -> plot."""

import json

import pytest
from test_data_layouts import write_folder

from pml_shrewd.cli import build_parser, main

TINY = ["--backbone", "test_resnet", "--bits", "16", "--small-images", "--image-size", "16", "--epochs", "1",
        "--batch-size", "16", "--mixed-precision", "no", "--hp-k", "10", "--eval-every", "0"]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    data = write_folder(root / "data", classes=["cat", "dog", "truck"], per_class=(8, 3))
    assert (
        main(["train", "--data", str(data), "--dataset", "folder", "--output-dir", str(root / "run"), *TINY])
        == 0
    )
    return root, data


def test_evaluate_reports_map_and_mahp(trained, capsys):
    root, _ = trained
    assert main(["evaluate", "--model", str(root / "run"), "--k", "10"]) == 0
    out = capsys.readouterr().out
    assert "mAP " in out and "mAHP@10 " in out and "mAHP@10_continuous" in out
    metrics = json.loads((root / "run" / "eval_metrics.json").read_text())
    assert 0 <= metrics["mAP"] <= 1 and 0 <= metrics["mAHP@10"] <= 1
    # Evaluating the saved model reproduces the trainer's final metrics (same model, same data).
    final = json.loads((root / "run" / "metrics.json").read_text())
    assert metrics["mAP"] == pytest.approx(final["mAP"], abs=1e-6)
    assert metrics["mAHP@10"] == pytest.approx(final["mAHP@10"], abs=1e-6)


def test_index_then_search_finds_the_query_itself(trained, tmp_path, capsys):
    root, data = trained
    assert (
        main(["index", "--model", str(root / "run"), "--data", str(data), "--out", str(tmp_path / "idx")])
        == 0
    )
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert len(meta["paths"]) == 24 and set(meta["label_names"]) == {"cat", "dog", "truck"}
    query = meta["paths"][5]
    results_file = tmp_path / "hits.json"
    assert (
        main(["search", "--index", str(tmp_path / "idx"), query, "--k", "24", "--json", str(results_file)])
        == 0
    )
    (hits,) = json.loads(results_file.read_text())
    assert len(hits) == 24 and hits[0]["hamming"] == 0
    mine = [h for h in hits if h["path"] == query]
    assert mine and mine[0]["hamming"] == 0 and mine[0]["label"] == meta["label_names"][5]
    assert [h["hamming"] for h in hits] == sorted(h["hamming"] for h in hits)
    assert query in capsys.readouterr().out


def test_plot_writes_figures(trained, tmp_path):
    root, _ = trained
    if not (root / "run" / "codes.npz").exists():
        assert main(["evaluate", "--model", str(root / "run"), "--k", "10"]) == 0
    assert main(["plot", "--codes", str(root / "run" / "codes.npz"), "--out-dir", str(tmp_path)]) == 0
    assert (tmp_path / "code_histogram.png").stat().st_size > 0
    assert (tmp_path / "hp_curves.png").stat().st_size > 0


def test_bad_input_gives_clear_errors(tmp_path, capsys):
    assert main(["evaluate", "--model", str(tmp_path / "nope")]) == 2
    assert "no trained model" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--epochs", "many"])
    assert main(["train", "--variant", "magic", "--output-dir", str(tmp_path)]) == 2
