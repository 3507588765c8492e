"""Benchmark rows: each a :class:`~pml_shrewd.training.TrainConfig` run through the trainer, or a
classical method on the same cached features, evaluated the same way."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Row:
    """One row of a benchmark table.

    ``config`` is a TrainConfig JSON file (``method == "train"``); ``method`` may instead be a
    classical hashing of the cached features (``"itq"``, ``"lsh"``), which then takes
    ``config``'s data, features and code length.
    ``reference`` marks a baseline at its own best setting; ``sweep`` a row never compared
    in the claims (e.g. other code lengths).
    """

    name: str
    config: str
    method: str = "train"
    reference: bool = False
    sweep: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)


def load_rows(manifest: str | os.PathLike) -> list[Row]:
    """The rows of a manifest JSON (``{"rows": [{"name": ..., "config": "x.json", ...}]}``); config
    paths are relative to the manifest's folder."""
    manifest = Path(manifest)
    try:
        data = json.loads(manifest.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"benchmark manifest {str(manifest)!r}: {err}") from err
    rows = []
    for entry in data["rows"]:
        entry = dict(entry)
        entry["config"] = str(manifest.parent / entry["config"])
        rows.append(Row(**entry))
    return rows


def row_config(row: Row, overrides: Mapping[str, Any]):
    """The row's TrainConfig: its file, then the row's own overrides, then the run's."""
    from ..training import TrainConfig

    return TrainConfig.load(row.config, **{**row.overrides, **overrides})


def run_row(
    row: Row,
    overrides: Mapping[str, Any],
    out: str | os.PathLike,
    extra_hierarchies: Mapping[str, Any] | None = None,
    probe_samples: int = 10000,
    runs_dir: str | os.PathLike = "runs/benchmark",
) -> dict[str, Any]:
    """Train (or fit) one row, evaluate it, save its codes with item names; returns its figures.

    Trained rows go through :meth:`Trainer.from_config`'s objects with the evaluator swapped for
    one that also scores ``extra_hierarchies`` and keeps the codes; classical rows use the
    same cached features (standardised as the heads see them) and the same evaluator.
    """
    from ..models.hash_head import feature_statistics
    from ..training import RetrievalEvaluator, Trainer, build_run
    from .classical import itq_codes, lsh_codes
    from .probe import linear_probe
    from .report import save_codes, variant_slug

    config = row_config(row, {**overrides, "output_dir": str(Path(runs_dir) / variant_slug(row.name))})
    started = time.time()
    run = build_run(config)
    base = run["evaluator"]
    evaluator = RetrievalEvaluator(
        base.semantic_distance,
        k=base.k,
        max_db_samples=base.max_db_samples,
        seed=base.seed,
        extra_semantic_distances=extra_hierarchies,
        return_curves=True,
        keep_codes=True,
        holdout_labels=base.holdout_labels,  # unseen / seen figures and the group share, if set
        label_groups=base.label_groups,
    )
    if row.method == "train":
        trainer = Trainer(**{**run, "evaluator": evaluator}, config=config)
        metrics = trainer.fit()
        metrics = {k: v for k, v in metrics.items() if not k.endswith("_examples")}
        codes = evaluator.codes
    else:
        db, queries = run["database_set"], run["test_set"]
        x_db, x_q = db.features.numpy(), queries.features.numpy()
        mean, std = feature_statistics(x_db)  # the heads' standardisation
        x_db, x_q = (x_db - mean) / std, (x_q - mean) / std
        if row.method == "itq":
            z_db, z_q = itq_codes(x_db, x_q, config.num_bits, config.seed)
        elif row.method == "lsh":
            z_db, z_q = lsh_codes(x_db, x_q, config.num_bits, config.seed)
        else:
            raise ValueError(f"row {row.name!r}: unknown method {row.method!r} (train, itq or lsh)")
        codes = dict(
            query_codes=z_q,
            query_labels=np.asarray(queries.targets),
            db_codes=z_db,
            db_labels=np.asarray(db.targets),
        )
        metrics = evaluator.score(z_q, z_db, codes["query_labels"], codes["db_labels"])
    seconds = time.time() - started
    metrics["probe_acc"] = linear_probe(
        codes["db_codes"],
        codes["db_labels"],
        codes["query_codes"],
        codes["query_labels"],
        probe_samples,
        config.seed,
    )
    names = lambda ds: [ds.sample_name(i) for i in range(len(ds))]  # noqa: E731
    codes_dir = Path(out) / "codes"
    codes_dir.mkdir(parents=True, exist_ok=True)
    save_codes(
        codes_dir / f"{variant_slug(row.name)}.npz",
        codes,
        names(run["test_set"]),
        names(run["database_set"]),
        config.num_bits,
    )
    figures = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}
    figures.update(
        bits=config.num_bits,
        variant=config.variant if row.method == "train" else None,
        method=row.method,
        reference=row.reference,
        sweep=row.sweep,
        config=os.path.relpath(row.config),
        overrides=dict(row.overrides),
        seconds=round(seconds, 1),
    )
    print(
        f"{row.name:<48} mAP {figures['mAP']:.4f} (cont {figures['mAP_continuous']:.4f})  "
        f"mAHP@{figures['k']} {figures['mAHP@k']:.4f} (cont {figures['mAHP@k_continuous']:.4f})  "
        f"probe {figures['probe_acc']:.3f}  balance {figures['bit_balance']:.3f}  [{seconds:.0f}s]",
        flush=True,
    )
    return figures


def _run_in_worker(args: tuple) -> dict[str, Any]:
    import torch

    threads, *rest = args
    torch.set_num_threads(threads)
    return run_row(*rest[:-1], **rest[-1])


def run_rows(
    rows: Sequence[Row],
    overrides: Mapping[str, Any],
    out: str | os.PathLike,
    *,
    extra_hierarchies: Mapping[str, Any] | None = None,
    probe_samples: int = 10000,
    workers: int = 1,
    threads: int | None = None,
    runs_dir: str | os.PathLike = "runs/benchmark",
) -> dict[str, dict[str, Any]]:
    """Every row's figures, by row name; ``workers > 1`` runs rows in parallel spawned processes
    with ``threads`` torch threads each (default 1; on 2 cores two 1-thread runs finish sooner
    than one 2-thread run after another: the head's matmuls are small). Sequential runs use
    ``threads`` too (default: all), restored afterwards. With the same ``threads`` the figures
    do not depend on ``workers``."""
    kwargs = dict(extra_hierarchies=extra_hierarchies, probe_samples=probe_samples, runs_dir=runs_dir)
    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)  # the same kernels as in the workers: the same figures
        try:
            return {row.name: run_row(row, overrides, out, **kwargs) for row in rows}
        finally:
            torch.set_num_threads(before)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futures = {
            row.name: pool.submit(_run_in_worker, (threads or 1, row, dict(overrides), out, kwargs))
            for row in rows
        }
        return {name: future.result() for name, future in futures.items()}
