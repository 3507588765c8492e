"""What every benchmark command shares: its flags, the row selection, the run-wide overrides,
the features computed once before the workers, and the run's description."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
from collections.abc import Sequence
from typing import Any

from .rows import Row


def benchmark_parser(description: str | None, default_rows: str | None) -> argparse.ArgumentParser:
    """The flags of a benchmark command (rows, outputs, workers) plus every TrainConfig flag;
    ``default_rows=None``: the command picks the manifest (e.g. by data set)."""
    from ..training.flags import add_config_flags

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    shown = os.path.relpath(default_rows) if default_rows else "the data set's rows.json"
    p.add_argument("--rows", default=default_rows, help=f"row manifest (default: {shown})")
    p.add_argument("--only", nargs="*", default=None, help="run only these row names")
    p.add_argument("--out", required=True, help="results folder (JSON, table, PNG, codes/*.npz)")
    p.add_argument("--runs-dir", default="runs/benchmark", help="where each row's trainer writes its run")
    p.add_argument("--workers", type=int, default=1, help="rows trained in parallel processes")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads per row (default: 1 per worker, else all)"
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="reuse the rows saved in OUT/rows whose config and overrides are unchanged; run the rest",
    )
    p.add_argument("--benchmarks-md", default=None, help="update this benchmark's section of BENCHMARKS.md")
    add_config_flags(p)
    return p


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The TrainConfig fields given on the command line (they override every row)."""
    from ..training import TrainConfig

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    return {k: v for k, v in vars(args).items() if k in fields and v is not None}


def select_rows(rows: Sequence[Row], only: Sequence[str] | None) -> list[Row]:
    """The rows named in ``only`` (all when ``None``); unknown names are an error."""
    if not only:
        return list(rows)
    unknown = sorted(set(only) - {r.name for r in rows})
    if unknown:
        raise SystemExit(f"--only: no rows named {unknown}")
    return [r for r in rows if r.name in only]


def prepare_run(config) -> None:
    """Everything a row computes once and caches (backbone features, caption embeddings),
    before the workers would compute it side by side."""
    from ..training import build_run

    build_run(config)


def run_description(
    script: str, argv: Sequence[str] | None, workers: int, threads: int | None
) -> dict[str, str]:
    """The command line and the machine, for the report."""
    return dict(
        command=" ".join([f"python {script}", *(sys.argv[1:] if argv is None else argv)]),
        machine=f"{platform.machine()}, {os.cpu_count()} cores, "
        + (f"{workers} worker processes x {threads or 1} thread(s)" if workers > 1 else "1 process"),
    )
