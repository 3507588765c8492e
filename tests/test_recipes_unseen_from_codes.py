"""recipes/unseen_from_codes.py: the hold-out figures from saved codes equal the evaluator's."""

import json

import numpy as np
from conftest import load_recipe

from pml_shrewd.retrieval import evaluate_codes, pack_codes


def test_unseen_figures_from_saved_codes(tmp_path):
    recipe = load_recipe("unseen_from_codes")
    names = sorted(n for line in open(recipe.CONFIGS / "cifar100-frozen" / "superclasses.txt")
                   if line.split("#")[0].split() for n in line.split("#")[0].split()[1:])  # fmt: skip
    assert len(names) == 100
    for n in names:
        (tmp_path / "data" / "train" / n).mkdir(parents=True)
    rng = np.random.default_rng(0)
    test_labels, train_labels = rng.integers(0, 100, 300), rng.integers(0, 100, 900)
    qz, dz = (rng.random((300, 16)) > 0.5).astype(np.uint8), (rng.random((900, 16)) > 0.5).astype(np.uint8)
    (tmp_path / "out" / "codes").mkdir(parents=True)
    np.savez(tmp_path / "out" / "codes" / "row.npz", test_codes=pack_codes(qz), train_codes=pack_codes(dz),
             test_labels=test_labels, train_labels=train_labels, bits=16)  # fmt: skip
    out = recipe.main([str(tmp_path / "out"), "--data-dir", str(tmp_path / "data"), "--k", "20"])
    from pml_shrewd.data.base import read_class_names
    from pml_shrewd.semantic_distances.factory import hierarchy_for_classes

    held = {
        names.index(n) for n in read_class_names(recipe.CONFIGS / "cifar100-frozen" / "holdout-classes.txt")
    }
    unseen = np.isin(test_labels, sorted(held))
    tree = hierarchy_for_classes(names, recipe.CONFIGS / "hierarchies" / "cifar100_cifar.parent-child.txt")
    want = evaluate_codes(qz[unseen], dz, test_labels[unseen], train_labels, semantic_distance=tree, k=20)
    assert out["row"]["mAHP@k [unseen]"] == want["mAHP@k"] and out["row"]["mAP [unseen]"] == want["mAP"]
    saved = json.loads((tmp_path / "out" / "unseen_from_codes.json").read_text())
    assert saved["row"]["queries [unseen]"] == int(unseen.sum())
