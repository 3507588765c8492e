"""recipes/topk_composition.py: the split of the top k into same-class and other-class items."""

import json

import numpy as np
import pytest
from conftest import load_recipe

from pml_shrewd import HierarchyDistance
from pml_shrewd.retrieval import pack_codes

topk_composition = load_recipe("topk_composition")


def _reference(q, db, yq, ydb, sim, k):
    same, other_sims, top1 = [], [], []
    for i in range(len(q)):
        ham = [(int((q[i] != db[j]).sum()), j) for j in range(len(db))]  # ties: insertion order
        nearest = [j for _, j in sorted(ham)[:k]]
        labels = [int(ydb[j]) for j in nearest]
        same.append(np.mean([lab == yq[i] for lab in labels]))
        others = [sim[yq[i], lab] for lab in labels if lab != yq[i]]
        if others:
            other_sims.append(np.mean(others))
        top1.append(labels[0] == yq[i])
    return np.mean(same), np.mean(other_sims), np.mean(top1)


@pytest.mark.parametrize("bits,k", [(8, 5), (16, 12)])
def test_topk_composition_matches_a_brute_force_loop(tmp_path, bits, k):
    rng = np.random.default_rng(bits)
    q, db = rng.integers(0, 2, (15, bits), dtype=np.uint8), rng.integers(0, 2, (40, bits), dtype=np.uint8)
    yq, ydb = rng.integers(0, 10, 15), rng.integers(0, 10, 40)
    (tmp_path / "codes").mkdir()
    np.savez(tmp_path / "codes" / f"{topk_composition.variant_slug('A + B')}.npz", test_codes=pack_codes(q), train_codes=pack_codes(db),
             test_labels=yq.astype(np.int16), train_labels=ydb.astype(np.int16), bits=bits)  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"results": {"A + B": {"bits": bits}}}))
    report = topk_composition.main([str(tmp_path), "--dataset", "cifar10", "--k", str(k)])
    sim = 1.0 - HierarchyDistance.cifar10().matrix().numpy()
    same, other, top1 = _reference(q, db, yq, ydb, sim, k)
    row = report["results"]["A + B"]
    assert row["same_class"] == pytest.approx(same) and row["top1"] == pytest.approx(top1)
    assert row["other_class_similarity"] == pytest.approx(other)
    assert json.loads((tmp_path / "topk_composition.json").read_text())["results"]["A + B"] == row


def test_topk_composition_names_a_missing_codes_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="codes"):
        topk_composition.main([str(tmp_path), "--dataset", "cifar10"])


def test_topk_composition_clips_k_to_the_database(tmp_path):
    # k above the database size: the cut-off is the database (no -1 ids looked up as labels).
    rng = np.random.default_rng(3)
    q, db = rng.integers(0, 2, (6, 8), dtype=np.uint8), rng.integers(0, 2, (9, 8), dtype=np.uint8)
    yq, ydb = rng.integers(0, 10, 6), rng.integers(0, 10, 9)
    (tmp_path / "codes").mkdir()
    np.savez(tmp_path / "codes" / f"{topk_composition.variant_slug('A')}.npz", test_codes=pack_codes(q),
             train_codes=pack_codes(db), test_labels=yq, train_labels=ydb, bits=8)  # fmt: skip
    (tmp_path / "results.json").write_text(json.dumps({"results": {"A": {"bits": 8}}}))
    row = topk_composition.main([str(tmp_path), "--dataset", "cifar10", "--k", "50"])["results"]["A"]
    sim = 1.0 - HierarchyDistance.cifar10().matrix().numpy()
    same, other, top1 = _reference(q, db, yq, ydb, sim, 9)
    assert row["k"] == 9 and row["same_class"] == pytest.approx(same)
    assert row["other_class_similarity"] == pytest.approx(other)


def test_topk_composition_splits_unseen_and_seen_queries_by_class_folder(tmp_path):
    # --holdout-classes: the figures of the held-out classes' queries and of the others, each
    # as the loop computes it on that subset; classes found by the saved paths' folders.
    rng = np.random.default_rng(5)
    q, db = rng.integers(0, 2, (30, 8), dtype=np.uint8), rng.integers(0, 2, (50, 8), dtype=np.uint8)
    yq, ydb = rng.integers(0, 10, 30), rng.integers(0, 10, 50)
    classes = HierarchyDistance.cifar10().classes
    names = np.array([f"/d/test/{classes[y]}/{i}.jpg" for i, y in enumerate(yq)])
    (tmp_path / "codes").mkdir()
    np.savez(tmp_path / "codes" / f"{topk_composition.variant_slug('A')}.npz", test_codes=pack_codes(q),
             train_codes=pack_codes(db), test_labels=yq, train_labels=ydb, test_names=names, bits=8)  # fmt: skip
    (tmp_path / "results.json").write_text(
        json.dumps({"results": {"A": {"bits": 8}, "features": {"bits": None}}})
    )
    held = [classes[int(yq[0])], classes[int(yq[1])]]
    (tmp_path / "held.txt").write_text("# two classes\n" + "\n".join(held) + "\n")
    report = topk_composition.main(
        [str(tmp_path), "--dataset", "cifar10", "--k", "7", "--holdout-classes", str(tmp_path / "held.txt")]
    )
    row = report["results"]["A"]
    assert "features" not in report["results"]  # a row without codes (bits None) is passed over
    sim = 1.0 - HierarchyDistance.cifar10().matrix().numpy()
    unseen = np.isin(yq, [classes.index(c) for c in held])
    for part, mask in (("unseen", unseen), ("seen", ~unseen)):
        same, other, top1 = _reference(q[mask], db, yq[mask], ydb, sim, 7)
        assert row[part]["queries"] == int(mask.sum())
        assert row[part]["same_class"] == pytest.approx(same) and row[part]["top1"] == pytest.approx(top1)
        assert row[part]["other_class_similarity"] == pytest.approx(other)
    # A row with bits whose codes file is absent is an error, not a row left out.
    (tmp_path / "results.json").write_text(json.dumps({"results": {"A": {"bits": 8}, "B": {"bits": 8}}}))
    with pytest.raises(FileNotFoundError):
        topk_composition.main([str(tmp_path), "--dataset", "cifar10"])
    (tmp_path / "results.json").write_text(json.dumps({"results": {"A": {"bits": 8}}}))
    (tmp_path / "held.txt").write_text("unicorn\n")
    with pytest.raises(ValueError, match="unicorn"):
        topk_composition.main(
            [str(tmp_path), "--dataset", "cifar10", "--holdout-classes", str(tmp_path / "held.txt")]
        )
