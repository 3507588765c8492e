"""What `pml-shrewd index`, `search` and `evaluate` print and write about classes: wnids with names.

The model is an untrained tiny network saved the way the trainer saves one (no training
needed to check names, layouts and providers).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from test_data_layouts import WNIDS, write_folder

from pml_shrewd.cli import main
from pml_shrewd.semantic_distances import WordNetNotFoundError, load_wordnet

# n02084071 dog, n02121808 domestic cat, n04194289 ship, n04490091 truck (sorted folder order)
READABLE = {"n02084071": "dog", "n02121808": "domestic cat", "n04194289": "ship", "n04490091": "truck"}


@pytest.fixture(scope="module")
def wordnet():
    try:
        return load_wordnet()
    except WordNetNotFoundError as err:
        pytest.skip(f"WordNet not installed (run .ci/install-wordnet.sh): {err}")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from pml_shrewd.models import HashingModel
    from pml_shrewd.training import TrainConfig

    root = tmp_path_factory.mktemp("names")
    data = write_folder(root / "data", classes=WNIDS, per_class=(3, 2))
    torch.manual_seed(0)
    model = HashingModel("test_resnet", num_bits=16, small_images=True, image_size=16)
    folder = root / "run"
    folder.mkdir()
    torch.save(model.state_dict(), folder / "model.pt")
    train = TrainConfig.from_dict({"dataset": "folder", "data_path": str(data), "semantic": "hierarchy"})
    info = {"model": model.config, "classes": sorted(WNIDS), "train": train.to_dict()}
    (folder / "config.json").write_text(json.dumps(info))
    return folder, data


def test_index_and_search_carry_readable_names(wordnet, run, tmp_path, capsys):
    folder, data = run
    assert main(["index", "--model", str(folder), "--data", str(data), "--out", str(tmp_path / "idx")]) == 0
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert meta["classes"] == sorted(WNIDS)
    assert meta["class_names"] == [READABLE[w] for w in sorted(WNIDS)]
    assert set(meta["label_names"]) == set(WNIDS)  # the ids stay what they were
    hits_file = tmp_path / "hits.json"
    query = meta["paths"][0]
    args = ["search", "--index", str(tmp_path / "idx"), query, "--k", "12", "--json", str(hits_file)]
    assert main(args) == 0
    (hits,) = json.loads(hits_file.read_text())
    assert all(h["name"] == READABLE[h["label"]] for h in hits)
    out = capsys.readouterr().out
    assert f"{hits[0]['label']} ({hits[0]['name']})" in out


def test_search_reads_an_index_written_without_names(wordnet, run, tmp_path):
    folder, data = run
    assert main(["index", "--model", str(folder), "--data", str(data), "--out", str(tmp_path / "idx")]) == 0
    meta_file = tmp_path / "idx" / "meta.json"
    meta = json.loads(meta_file.read_text())
    del meta["classes"], meta["class_names"]  # as written before 0.2
    meta_file.write_text(json.dumps(meta))
    hits_file = tmp_path / "hits.json"
    assert main(["search", "--index", str(tmp_path / "idx"), meta["paths"][0], "--json", str(hits_file)]) == 0
    (hits,) = json.loads(hits_file.read_text())
    assert all(h["name"] == h["label"] for h in hits)


def test_evaluate_prints_and_writes_readable_names(wordnet, run, tmp_path, capsys):
    folder, _ = run
    assert main(["evaluate", "--model", str(folder), "--k", "5", "--output-dir", str(tmp_path)]) == 0
    codes = np.load(tmp_path / "codes.npz")
    assert codes["classes"].tolist() == sorted(WNIDS)
    assert codes["class_names"].tolist() == [READABLE[w] for w in sorted(WNIDS)]
    out = capsys.readouterr().out
    assert "semantic distance: hierarchy (HierarchyDistance(" in out and "n02084071 (dog)" in out


def test_index_of_a_flat_folder_uses_the_shared_layout_detection(run, tmp_path):
    folder, data = run
    flat = tmp_path / "photos"
    flat.mkdir()
    for i, path in enumerate(sorted((data / "test").rglob("*.png"))):
        (flat / f"{i}.png").write_bytes(path.read_bytes())
    assert main(["index", "--model", str(folder), "--data", str(flat), "--out", str(tmp_path / "idx")]) == 0
    meta = json.loads((tmp_path / "idx" / "meta.json").read_text())
    assert len(meta["paths"]) == 8 and meta["classes"] == ["unlabelled"]
    # A train/ + test/ folder indexes the asked split only.
    args = [
        "index",
        "--model",
        str(folder),
        "--data",
        str(data),
        "--split",
        "test",
        "--out",
        str(tmp_path / "t"),
    ]
    assert main(args) == 0
    assert len(json.loads((tmp_path / "t" / "meta.json").read_text())["paths"]) == 8
