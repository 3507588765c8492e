"""Weakly supervised hashing on real captions (Flickr8k), in one command.

    tar xzf flickr8k-160.tar.gz -C /tmp
    python recipes/benchmark_captions.py --captions /tmp/flickr8k/captions.csv \\
        --out benchmarks/results/flickr8k --workers 2 --benchmarks-md BENCHMARKS.md

No classes: the only supervision is the captions. Each image trains on its captions 0-2 (the
target: the normalised mean of their MiniLM embeddings) and is scored by its captions 3-4,
which no row ever trains on, with two relevances: the sentence model's ``(1 + cos) / 2`` and a
model-free TF-IDF cosine of the captions' content-word lemmas
(:class:`pml_shrewd.training.CaptionRetrievalEvaluator`). The 1,000 test images query the
6,000 train images (``--validate``: the 1,000 dev images query them, the test images are never
read: tune with it). Every row is a TrainConfig file (``recipes/configs/flickr8k-frozen/rows.json``)
run through the library's one training path on the same cached ``tf_efficientnet_lite0``
features (160 px, frozen), head, budget and seed, or a method on the same features (ITQ, LSH,
cosine of the features) or a reference (a random ranking, the ideal ranking, the text-side
oracle: ITQ of the training captions' embeddings). The PML losses train on k-means clusters of
the caption embeddings (``pseudo_labels``). Any TrainConfig flag overrides every row.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from pml_shrewd.benchmarking import load_rows, run_rows
from pml_shrewd.benchmarking.claims import check_caption_claims, is_pml_row, plain_rows
from pml_shrewd.benchmarking.command import (
    benchmark_parser,
    config_overrides,
    prepare_run,
    run_description,
    select_rows,
)
from pml_shrewd.benchmarking.report import caption_markdown_table, update_benchmarks_md, write_report
from pml_shrewd.benchmarking.rows import row_config

ROWS = Path(__file__).resolve().parent / "configs" / "flickr8k-frozen" / "rows.json"


def main(argv: list[str] | None = None) -> dict:
    p = benchmark_parser(__doc__, str(ROWS))
    p.add_argument("--captions", required=True, help="captions.csv (image,caption; splits.csv beside it)")
    p.add_argument("--validate", action="store_true", help="query with the dev images (tuning)")
    p.add_argument(
        "--text-steps", type=int, default=2000, help="steps of the text encoder on SHREWD's codes (0: none)"
    )
    args = p.parse_args(argv)
    overrides = {**config_overrides(args), "data_path": args.captions, "dataset": "captions"}
    if args.validate:
        overrides["query_split"] = "dev"
    rows = select_rows(load_rows(args.rows), args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    first = row_config(rows[0], overrides)
    prepare_run(first)  # features and caption embeddings, once
    prepare_seconds = time.time() - started

    results = run_rows(
        rows,
        overrides,
        out,
        workers=args.workers,
        threads=args.threads,
        runs_dir=args.runs_dir,
        resume=args.resume,
    )
    some = next(iter(results.values()))
    relevances = some["relevances"]
    split = "dev queries vs train database" if args.validate else "test queries vs train database"
    report = dict(
        dataset="flickr8k",
        split=split,
        k=some["k"],
        relevances=relevances,
        rows=os.path.relpath(args.rows),
        overrides={k: v for k, v in overrides.items() if k != "data_path"},
        **run_description("recipes/benchmark_captions.py", argv, args.workers, args.threads),
        wall_seconds=time.time() - started,
        prepare_seconds=prepare_seconds,
        results={n: {m: v for m, v in r.items() if not m.startswith("hp_curve")} for n, r in results.items()},
    )
    report["claims"] = check_caption_claims(report["results"], relevances)
    shrewd = plain_rows(results).get("shrewd")
    if args.text_steps and shrewd is not None:
        report["text_to_image"] = text_queries(first, out, shrewd, args)
        t = report["text_to_image"]
        report["claims"]["text encoder R@10 > nearest-caption route R@10"] = dict(
            holds=t["text encoder"]["R@10"] > t["nearest caption"]["R@10"],
            detail=f"{t['text encoder']['R@10']:.4f} vs {t['nearest caption']['R@10']:.4f}",
        )
    report["wall_seconds"] = time.time() - started
    curves = {
        f"{name} [{rel}]": results[name][f"hp_curve [{rel}]"]
        for name in plotted_rows(results)
        for rel in relevances
        if f"hp_curve [{rel}]" in results[name]
    }
    write_report(out, report, curves, title=f"Flickr8k: HP@k by held-out captions ({split})")
    if report.get("text_to_image"):
        with open(out / "table.md", "a") as f:
            f.write(text_table(report["text_to_image"]))
    for claim, check in report["claims"].items():
        print(f"{'PASS' if check['holds'] else 'FAIL'}  {claim}: {check['detail']}")
    if args.benchmarks_md:
        table = caption_markdown_table(report) + text_table(report.get("text_to_image"))
        bullets = [
            f"command: `{report['command']}`",
            f"machine: {report['machine']}; wall time {report['wall_seconds'] / 60:.1f} min for all rows "
            f"({prepare_seconds / 60:.1f} min of it backbone features and caption embeddings)",
            f"rows: `{report['rows']}` (TrainConfig files; run-wide overrides {report['overrides']})",
        ]
        tag = "flickr8k" + ("-validation" if args.validate else "")
        update_benchmarks_md(args.benchmarks_md, tag, f"Flickr8k ({split})", bullets, table)
    print(f"wrote {out}/results.json, table.md, hp_curves.png, codes/*.npz in {report['wall_seconds']:.0f}s")
    return report


def text_queries(config, out: Path, shrewd: str, args) -> dict:
    """Held-out captions of the query images search SHREWD's image codes: text encoder vs nearest caption."""
    from pml_shrewd.benchmarking.report import variant_slug
    from pml_shrewd.benchmarking.text_queries import text_to_image_rows
    from pml_shrewd.data import CaptionedImages

    data = CaptionedImages(
        config.data_path, train_captions=config.train_captions, held_out_captions=config.held_out_captions
    )
    started = time.time()
    rows = text_to_image_rows(
        out / "codes" / f"{variant_slug(shrewd)}.npz",
        data,
        sentence_model=config.sentence_model,
        steps=args.text_steps,
        seed=config.seed,
        k=config.hp_k,
        save_to=Path(args.runs_dir) / variant_slug(shrewd) / "text_encoder",
    )
    for name, r in rows.items():
        print(f"text -> image, {name:<16} " + "  ".join(f"{k} {v:.4f}" for k, v in r.items()))
    return {**rows, "seconds": round(time.time() - started, 1), "steps": args.text_steps}


def text_table(text: dict | None) -> str:
    """The text-to-image figures as a markdown table."""
    if not text:
        return ""
    keys = ["R@1", "R@5", "R@10", "median rank", "mAHP@k"]
    lines = ["", "| text -> image (held-out captions of the query images) | " + " | ".join(keys) + " |"]
    lines.append("|" + "---|" * (len(keys) + 1))
    for name in ("text encoder", "nearest caption"):
        lines.append(f"| {name} | " + " | ".join(f"{text[name][k]:.4f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


def plotted_rows(results: dict) -> list[str]:
    """SHREWD, the best PML row, ITQ, the text-side oracle and the random ranking, when present."""
    plain = plain_rows(results)
    pml = [n for n, r in results.items() if is_pml_row(r) and not r.get("sweep")]
    best = max(pml, key=lambda n: results[n]["mAHP@k [sentence]"]) if pml else None
    by_method = {r["method"]: n for n, r in results.items() if not r.get("sweep")}
    picks = [
        plain.get("shrewd"),
        best,
        by_method.get("itq"),
        by_method.get("text_oracle"),
        by_method.get("random"),
    ]
    return [n for n in picks if n is not None]


if __name__ == "__main__":
    main()
