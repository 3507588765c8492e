"""Several seeds of one benchmark side by side: per row, each seed's figure, the mean and the sd.

    python recipes/seed_spread.py --runs 0=benchmarks/results/cifar100-unseen 1=/tmp/s1 2=/tmp/s2 \
        --keys "mAHP@k [unseen]" "mAP [unseen]" --out benchmarks/results/cifar100-unseen/seeds.json

Each run folder holds a ``results.json`` of ``recipes/benchmark_cifar.py`` (``--seed N``); rows are
those every run has (``--rows`` to choose). A seed given twice (``1=/tmp/s1a 1=/tmp/s1b``) takes the
rows of both folders, e.g. rows of one seed run by separate ``--only`` commands; a row in two
folders of one seed is an error. Writes the JSON and prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pml_shrewd.benchmarking.report import seed_spread, seed_spread_table


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, help="SEED=FOLDER (a folder with results.json)")
    p.add_argument("--keys", nargs="+", required=True, help="figures of results.json to compare")
    p.add_argument("--rows", nargs="+", default=None, help="row names (default: those every run has)")
    p.add_argument("--out", required=True, help="the JSON to write")
    args = p.parse_args(argv)
    reports: dict[int, dict] = {}
    sources: dict[int, list[str]] = {}
    for item in args.runs:
        seed, _, folder = item.partition("=")
        if not folder or not seed.isdigit():
            raise SystemExit(f"--runs: {item!r} is not SEED=FOLDER")
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise SystemExit(f"--runs: no results.json in {folder!r}")
        rows = json.loads(path.read_text())["results"]
        merged = reports.setdefault(int(seed), {"results": {}})["results"]
        twice = sorted(set(rows) & set(merged))
        if twice:
            raise SystemExit(f"--runs: seed {seed} has rows {twice} in two folders")
        merged.update(rows)
        sources.setdefault(int(seed), []).append(str(path))
    spread = seed_spread(reports, args.keys, args.rows)
    Path(args.out).write_text(json.dumps(dict(sources=sources, keys=args.keys, rows=spread), indent=2))
    print(seed_spread_table(spread, args.keys))
    return spread


if __name__ == "__main__":
    main()
