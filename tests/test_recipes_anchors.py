"""recipes/anchor_protocols.py --holdout-classes: tie figures of unseen and seen queries."""

import json

import numpy as np
import pytest
from conftest import load_recipe

from pml_shrewd import HierarchyDistance
from pml_shrewd.retrieval import pack_codes

anchor_protocols = load_recipe("anchor_protocols")


def _write_codes(folder, q, db, yq, ydb, names, bits):
    (folder / "codes").mkdir(parents=True)
    np.savez(folder / "codes" / "A.npz", test_codes=pack_codes(q), train_codes=pack_codes(db),
             test_labels=yq.astype(np.int16), train_labels=ydb.astype(np.int16), test_names=names, bits=bits)  # fmt: skip
    (folder / "results.json").write_text(
        json.dumps({"results": {"A": {"bits": bits}, "cosine": {"bits": None}}})
    )


@pytest.mark.parametrize("bits", [8, 16])
def test_unseen_and_seen_tie_figures_are_those_of_their_queries_alone(tmp_path, bits):
    # Few bits, 60 items: many Hamming ties, so index / expected / best / worst differ. Each part must be
    # what the script gives for a codes file that holds only that part's queries.
    rng = np.random.default_rng(bits)
    q, db = rng.integers(0, 2, (40, bits), dtype=np.uint8), rng.integers(0, 2, (60, bits), dtype=np.uint8)
    yq, ydb = rng.integers(0, 10, 40), rng.integers(0, 10, 60)
    classes = HierarchyDistance.cifar10().classes
    names = np.array([f"/d/test/{classes[y]}/{i}.jpg" for i, y in enumerate(yq)])
    _write_codes(tmp_path / "all", q, db, yq, ydb, names, bits)
    held = sorted({classes[int(y)] for y in yq[:3]})
    (tmp_path / "held.txt").write_text("\n".join(held) + "\n")
    args = ["--cifar", "cifar10", "--k", "9"]
    row = anchor_protocols.main(
        [str(tmp_path / "all"), *args, "--holdout-classes", str(tmp_path / "held.txt")]
    )
    row = row["results"]["A"]
    assert row["mAHP@k [worst]"] < row["mAHP@k [best]"]  # the data has ties to spread
    unseen = np.isin(yq, [classes.index(c) for c in held])
    for part, mask in (("unseen", unseen), ("seen", ~unseen)):
        _write_codes(tmp_path / part, q[mask], db, yq[mask], ydb, names[mask], bits)
        alone = anchor_protocols.main([str(tmp_path / part), *args])["results"]["A"]
        assert row[part]["queries"] == int(mask.sum())
        for key in alone:
            if key.startswith(("mAP [", "mAHP@k [")):
                assert row[part][key] == pytest.approx(alone[key], abs=1e-12), (part, key)
        assert row[part]["mAHP@k [worst]"] <= row[part]["mAHP@k [expected]"] <= row[part]["mAHP@k [best]"]
    printed = anchor_protocols.markdown(json.loads((tmp_path / "all" / "anchors.json").read_text()))
    assert f"A [unseen, {int(unseen.sum())} queries]" in printed
    # --merge refuses a file made without the hold-out list.
    with pytest.raises(SystemExit, match="hold-out list"):
        anchor_protocols.main([str(tmp_path / "all"), *args, "--out", str(tmp_path / "unseen" / "anchors.json"),
                               "--merge", "--holdout-classes", str(tmp_path / "held.txt")])  # fmt: skip


def test_holdout_classes_name_an_unknown_class(tmp_path):
    rng = np.random.default_rng(0)
    q, db = rng.integers(0, 2, (5, 8), dtype=np.uint8), rng.integers(0, 2, (7, 8), dtype=np.uint8)
    yq, ydb = rng.integers(0, 10, 5), rng.integers(0, 10, 7)
    classes = HierarchyDistance.cifar10().classes
    _write_codes(
        tmp_path, q, db, yq, ydb, np.array([f"/t/{classes[y]}/{i}.jpg" for i, y in enumerate(yq)]), 8
    )
    (tmp_path / "held.txt").write_text("unicorn\n")
    with pytest.raises(ValueError, match="unicorn"):
        anchor_protocols.main(
            [str(tmp_path), "--cifar", "cifar10", "--holdout-classes", str(tmp_path / "held.txt")]
        )
