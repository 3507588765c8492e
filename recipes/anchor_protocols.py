"""The published anchors' protocols and tie-aware figures, from a benchmark's saved codes (issue 17).

    python recipes/anchor_protocols.py benchmarks/results/cifar100 \\
        --hierarchy-file recipes/configs/hierarchies/cifar100_cifar.parent-child.txt

For every ``codes/*.npz`` of a ``benchmark_cifar.py`` output (binary codes, labels, image paths):
mAP and mAHP@k with Hamming ties broken by database index (the tables' rule), in expectation over
all orders inside tied groups, and at the best and worst order; Barz & Denzler's leave-one-out
mAHP@k on the test set (the protocol of their published 0.8312 / 0.8621); DeepHash-pytorch's
``CalcTopMap`` mAP@1000 and mAP@all; Making Better Mistakes' hierarchical distance of the top k
and mistake severity. Writes ``anchors.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from pml_shrewd import HierarchyDistance
from pml_shrewd.benchmarking.report import rows_with_codes, saved_class_ids, variant_slug
from pml_shrewd.retrieval import mahp_at_k, mean_average_precision, unpack_codes
from pml_shrewd.retrieval.protocols import (
    deephash_map,
    hierarchical_distance_at_k,
    leave_one_out_mahp,
    mistake_severity,
)

TIES = ("index", "expected", "best", "worst")


def anchors(codes_file: Path, tree, k: int, holdout_classes: list[str] | None = None) -> dict:
    """Every figure of one codes file; with ``holdout_classes`` also ``unseen`` / ``seen``: mAP and
    mAHP@k under every tie rule over those classes' queries and over the others'."""
    data = np.load(codes_file)
    bits = int(data["bits"])
    q, db = unpack_codes(data["test_codes"], bits), unpack_codes(data["train_codes"], bits)
    ql, dl = data["test_labels"].astype(np.int64), data["train_labels"].astype(np.int64)
    out: dict = {"bits": bits, **_tie_figures(q, db, ql, dl, tree, k)}
    if holdout_classes is not None:
        unseen = np.isin(ql, saved_class_ids(data, holdout_classes, "--holdout-classes"))
        for part, rows in (("unseen", unseen), ("seen", ~unseen)):
            out[part] = dict(queries=int(rows.sum()), **_tie_figures(q[rows], db, ql[rows], dl, tree, k))
    out["Barz LOO mAHP@k (test set)"] = leave_one_out_mahp(q, ql, semantic_distance=tree, k=k)
    out["DeepHash mAP@1000"] = deephash_map(q, db, ql, dl, topk=1000)
    out["DeepHash mAP@all"] = deephash_map(q, db, ql, dl, topk=None)
    out["hdist@k"] = hierarchical_distance_at_k(q, db, ql, dl, semantic_distance=tree, k=k)
    out["mistake severity"] = mistake_severity(q, db, ql, dl, semantic_distance=tree)
    return {key: v if isinstance(v, int | dict) else float(v) for key, v in out.items()}


def _tie_figures(q, db, ql, dl, tree, k: int) -> dict:
    out = {}
    for ties in TIES:
        out[f"mAP [{ties}]"] = float(mean_average_precision(q, db, ql, dl, ties=ties))
        out[f"mAHP@k [{ties}]"] = float(mahp_at_k(q, db, ql, dl, semantic_distance=tree, k=k, ties=ties))
    return out


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="an --out folder of benchmark_cifar.py (with codes/ and results.json)")
    p.add_argument(
        "--hierarchy-file", default=None, help="Barz & Denzler's tree (default: the library's WordNet)"
    )
    p.add_argument("--cifar", choices=["cifar10", "cifar100"], default="cifar100")
    p.add_argument("--k", type=int, default=250)
    p.add_argument(
        "--only", nargs="*", default=None, help="row names (default: every row of results.json with codes)"
    )
    p.add_argument(
        "--holdout-classes",
        default=None,
        help="a class-list file (an unseen-class run): tie figures of unseen and seen queries too",
    )
    p.add_argument("--out", default=None, help="the JSON to write (default: RESULTS_DIR/anchors.json)")
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the other rows of an existing --out file (rows computed now replace theirs)",
    )
    args = p.parse_args(argv)
    results_dir = Path(args.results_dir)
    classes = None
    if args.hierarchy_file:
        tree = HierarchyDistance.from_file(args.hierarchy_file)
        classes = "Barz & Denzler"
    else:
        tree = HierarchyDistance.cifar100() if args.cifar == "cifar100" else HierarchyDistance.cifar10()
        classes = "WordNet (pml_shrewd)"
    holdout = None
    if args.holdout_classes:
        from pml_shrewd.data.base import read_class_names

        holdout = read_class_names(args.holdout_classes)
    out_file = Path(args.out) if args.out else results_dir / "anchors.json"
    order = rows_with_codes(json.loads((results_dir / "results.json").read_text())["results"])
    rows, kept, note = {}, {}, None
    if args.merge and out_file.is_file():
        previous = json.loads(out_file.read_text())
        made = (previous.get("hierarchy"), previous.get("k"), previous.get("holdout_classes"))
        if made != (classes, args.k, args.holdout_classes):
            raise SystemExit(f"--merge: {out_file} was made with another hierarchy, k or hold-out list")
        kept, note = previous["results"], previous.get("note")
    for name in args.only or order:
        started = time.time()
        rows[name] = anchors(results_dir / "codes" / f"{variant_slug(name)}.npz", tree, args.k, holdout)
        print(f"{name}: {time.time() - started:.0f} s", flush=True)
    merged = {**kept, **rows}
    merged = {name: merged[name] for name in [*order, *merged] if name in merged}  # the table's order
    out = dict(hierarchy=classes, k=args.k, ties=list(TIES), results=merged)
    if holdout is not None:
        out["holdout_classes"] = args.holdout_classes
    if note:
        out["note"] = note
    out_file.write_text(json.dumps(out, indent=2))
    print(markdown(out))
    return out


def markdown(out: dict) -> str:
    k = out["k"]
    head = ["variant", "mAP (index / expected / best-worst)", f"mAHP@{k} (index / expected / best-worst)",
            f"Barz LOO mAHP@{k}", "DeepHash mAP@1000 / @all", f"hdist@{k}", "mistake severity"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in out["results"].items():
        rest = (
            f"{r['Barz LOO mAHP@k (test set)']:.4f} | {r['DeepHash mAP@1000']:.4f} / "
            f"{r['DeepHash mAP@all']:.4f} | {r['hdist@k']:.4f} | {r['mistake severity']:.4f}"
        )
        lines.append(f"| {name} | {_ties_cells(r)} | {rest} |")
        for part in ("unseen", "seen"):
            if part in r:  # the tie figures only: the other protocols use every query
                lines.append(
                    f"| {name} [{part}, {r[part]['queries']} queries] | {_ties_cells(r[part])} | | | | |"
                )
    return "\n".join(lines) + "\n"


def _ties_cells(r: dict) -> str:
    return " | ".join(
        f"{r[f'{m} [index]']:.4f} / {r[f'{m} [expected]']:.4f} / {r[f'{m} [worst]']:.4f}-{r[f'{m} [best]']:.4f}"
        for m in ("mAP", "mAHP@k")
    )


if __name__ == "__main__":
    main()
