"""What a variant's top-k Hamming neighbours are made of, from ``benchmark_cifar.py``'s saved codes.

    python recipes/topk_composition.py benchmarks/results/cifar100 --dataset cifar100 \\
        --barz-hierarchy ../shared/data/hierarchies/cifar100_cifar.parent-child.txt

mAHP@k mixes two things: how many of a query's k nearest train images share its class,
and how close (in the hierarchy) the classes of the others are. This splits them, per
variant: ``same_class`` (mean fraction of the top k in the query's class),
``other_class_similarity`` (mean 1 - d over the top-k items of other classes, queries
whose top k has one), and ``top1`` (the nearest item's class is the query's); ``k`` is the
cut-off used (``--k`` clipped to the database size, as in the metrics). Search is
exact (faiss flat binary index through ``HashIndex``, ties in insertion order like the
metrics). Writes ``topk_composition.json`` into the results directory.

``--holdout-classes FILE`` (an unseen-class run, issue 17) adds the same figures for the
queries of those classes (``unseen``) and of the others (``seen``); class names come from
the saved image paths' folders (``test_names``), so the file needs no label order.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pml_shrewd.benchmarking.report import rows_with_codes, saved_class_ids, variant_slug
from pml_shrewd.retrieval import HashIndex


def topk_composition(
    codes_file: Path, similarity: np.ndarray, k: int, holdout_classes: list[str] | None = None
) -> dict:
    """Same-class fraction, similarity of the other-class items and top-1 of one codes file;
    with ``holdout_classes`` also ``unseen`` / ``seen``: the same over those classes' queries
    and the others'."""
    data = np.load(codes_file)
    bits = int(data["bits"])
    index = HashIndex(bits)
    index.add_packed(data["train_codes"], labels=data["train_labels"].astype(np.int64))
    k = min(k, len(index))  # like the metrics: k clipped to the database (no -1 ids to look up)
    _, ids = index.search_packed(data["test_codes"], k)
    neighbours = index.get_labels(ids)
    queries = data["test_labels"].astype(np.int64)[:, None]
    same = neighbours == queries
    sims = similarity[queries, neighbours]
    row = dict(bits=bits, k=k, **_composition(same, sims, np.ones(len(same), dtype=bool)))
    if holdout_classes is not None:
        unseen = np.isin(queries[:, 0], saved_class_ids(data, holdout_classes, "--holdout-classes"))
        row["unseen"] = dict(queries=int(unseen.sum()), **_composition(same, sims, unseen))
        row["seen"] = dict(queries=int((~unseen).sum()), **_composition(same, sims, ~unseen))
    return row


def _composition(same: np.ndarray, sims: np.ndarray, rows: np.ndarray) -> dict:
    same, sims = same[rows], sims[rows]
    other = ~same
    has_other = other.any(axis=1)
    other_sim = (sims * other).sum(axis=1)[has_other] / other.sum(axis=1)[has_other]
    return dict(
        same_class=float(same.mean()),
        other_class_similarity=float(other_sim.mean()) if has_other.any() else float("nan"),
        top1=float(same[:, 0].mean()),
    )


def training_hierarchy(dataset: str, barz_file: str | None):
    """The benchmark's training hierarchy: Barz & Denzler's tree when given, else the library's WordNet."""
    from pml_shrewd import HierarchyDistance

    if dataset == "cifar100":
        if barz_file:
            return "Barz & Denzler", HierarchyDistance.from_file(barz_file)
        return "WordNet (pml_shrewd)", HierarchyDistance.cifar100()
    return "WordNet (pml_shrewd)", HierarchyDistance.cifar10()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results_dir", help="an --out directory of benchmark_cifar.py (with codes/)")
    p.add_argument("--dataset", choices=["cifar10", "cifar100"], required=True)
    p.add_argument("--barz-hierarchy", default=None)
    p.add_argument("--k", type=int, default=250)
    p.add_argument("--holdout-classes", default=None, help="a class-list file: unseen / seen figures too")
    args = p.parse_args(argv)
    results_dir = Path(args.results_dir)
    codes_dir = results_dir / "codes"
    if not codes_dir.is_dir():
        raise FileNotFoundError(f"{codes_dir} not found: pass benchmark_cifar.py's --out directory")
    name, provider = training_hierarchy(args.dataset, args.barz_hierarchy)
    saved = json.loads((results_dir / "results.json").read_text())
    similarity = 1.0 - provider.matrix().numpy()
    holdout = None
    if args.holdout_classes:
        from pml_shrewd.data.base import read_class_names

        holdout = read_class_names(args.holdout_classes)
    rows = {}
    for variant in rows_with_codes(saved["results"]):
        rows[variant] = topk_composition(
            codes_dir / f"{variant_slug(variant)}.npz", similarity, args.k, holdout
        )
    report = dict(hierarchy=name, k=args.k, holdout_classes=args.holdout_classes, results=rows)
    (results_dir / "topk_composition.json").write_text(json.dumps(report, indent=2))
    print(f"| variant | top-{args.k}: same class | similarity of the other classes [{name}] | top-1 |")
    print("|---|---|---|---|")
    for variant, r in rows.items():
        for part in ("", "unseen", "seen") if holdout else ("",):
            f = r[part] if part else r
            label = f"{variant} [{part}]" if part else variant
            print(
                f"| {label} | {f['same_class']:.3f} | {f['other_class_similarity']:.3f} | {f['top1']:.3f} |"
            )
    return report


if __name__ == "__main__":
    main()
