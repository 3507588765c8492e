"""Benchmark rows: each a :class:`~pml_shrewd.training.TrainConfig` run through the trainer, or a
classical method on the same cached features, evaluated the same way."""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
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
    """The row's TrainConfig: its file, then the row's own overrides, then the run's (a run-wide
    ``pseudo_labels`` only reaches rows whose variant trains on labels)."""
    from ..losses import get_variant
    from ..training import TrainConfig

    config = TrainConfig.load(row.config, **row.overrides)
    overrides = dict(overrides)
    if not get_variant(config.variant).needs_class_labels or row.method != "train":
        overrides.pop("pseudo_labels", None)  # a run-wide cluster count is for the label-based rows
    return TrainConfig.from_dict(config.to_dict(), **overrides) if overrides else config


#: Rows that are no training run: classical hashes and references on the same data.
METHODS = ("train", "itq", "lsh", "features", "random", "ideal", "text_oracle", "ridge", "ridge_itq")
#: The methods that read the pooled backbone features (a fine-tuning config's data set holds maps).
FEATURE_METHODS = ("itq", "lsh", "features", "ridge", "ridge_itq")


def check_rows(rows: Sequence[Row], overrides: Mapping[str, Any]) -> None:
    """Fail before any row runs, not when a row is scored after the others have trained: an
    unknown method, or a feature method on a fine-tuning config (``train_stages > 0``)."""
    for row in rows:
        if row.method not in METHODS:
            raise ValueError(f"row {row.name!r}: unknown method {row.method!r} (one of {METHODS})")
        if row.method in FEATURE_METHODS:
            stages = row_config(row, overrides).train_stages
            if stages:
                raise ValueError(
                    f"row {row.name!r}: method {row.method!r} ranks the frozen pooled features, but its "
                    f"config {row.config!r} fine-tunes (train_stages {stages}): give it a frozen config"
                )


def run_row(
    row: Row,
    overrides: Mapping[str, Any],
    out: str | os.PathLike,
    extra_hierarchies: Mapping[str, Any] | None = None,
    probe_samples: int = 10000,
    runs_dir: str | os.PathLike = "runs/benchmark",
) -> dict[str, Any]:
    """Train (or fit) one row, evaluate it, save its codes with item names; returns its figures.

    Trained rows go through :meth:`Trainer.from_config`'s objects with the evaluator kept but
    told to return curves and keep the codes (and to score ``extra_hierarchies``); the other
    rows (:data:`METHODS`) use the same cached features and the same evaluator:

    - ``itq`` / ``lsh``: classical hashes of the standardised features (as the heads see them);
    - ``features``: the standardised backbone features ranked by cosine, no hashing;
    - ``random``: a random ranking (seeded Gaussian vectors), the floor of the scale;
    - captioned data only: ``ideal`` ranks by each relevance's own vectors (the best possible
      ranking), ``text_oracle`` is ITQ of the training targets' caption embeddings of query and
      database images (what ``bits`` bits can hold of caption space); ``ridge`` regresses the
      training targets' caption embeddings on the standardised features (scikit-learn's ridge,
      alpha 1000, chosen on Flickr8k's dev split) and ranks by cosine of the predictions (what
      the features hold of caption space), ``ridge_itq`` is ITQ of those predictions (a hash a
      user could build without any metric learning).
    """
    from ..training import Trainer, build_run
    from .probe import linear_probe
    from .report import save_codes, variant_slug

    check_rows([row], overrides)
    config = row_config(row, {**overrides, "output_dir": str(Path(runs_dir) / variant_slug(row.name))})
    started = time.time()
    run = build_run(config)
    evaluator = copy_with(run["evaluator"], return_curves=True, keep_codes=True)
    captioned = hasattr(evaluator, "relevances")
    if extra_hierarchies and not captioned:
        evaluator.extra_semantic_distances = {**evaluator.extra_semantic_distances, **extra_hierarchies}
    codes: dict[str, np.ndarray] | None = None
    if row.method == "train":
        trainer = Trainer(**{**run, "evaluator": evaluator}, config=config)
        metrics = trainer.fit()
        metrics = {k: v for k, v in metrics.items() if not k.endswith("_examples")}
        codes = evaluator.codes
    else:
        metrics, codes = _fixed_row(row, config, run, evaluator)
    seconds = time.time() - started
    if codes is not None and not captioned:  # a linear probe needs class labels
        metrics["probe_acc"] = linear_probe(
            codes["db_codes"],
            codes["db_labels"],
            codes["query_codes"],
            codes["query_labels"],
            probe_samples,
            config.seed,
        )
    if codes is not None:
        names = lambda ds: [ds.sample_name(i) for i in range(len(ds))]  # noqa: E731
        codes_dir = Path(out) / "codes"
        codes_dir.mkdir(parents=True, exist_ok=True)
        save_codes(
            codes_dir / f"{variant_slug(row.name)}.npz",
            codes,
            names(run["test_set"]),
            names(run["database_set"]),
            config.num_bits,
            root=data_root(config.data_path),
        )
    figures = {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in metrics.items()}
    figures.update(
        bits=config.num_bits if row.method not in ("features", "random", "ideal", "ridge") else None,
        variant=config.variant if row.method == "train" else None,
        method=row.method,
        reference=row.reference,
        sweep=row.sweep,
        config=os.path.relpath(row.config),
        overrides=dict(row.overrides),
        seconds=round(seconds, 1),
    )
    shown = [k for k in figures if k.startswith(("mAP", "mAHP@k", "nDCG@k", "probe_acc", "bit_balance"))]
    print(
        f"{row.name:<48} "
        + "  ".join(f"{k} {figures[k]:.4f}" for k in shown if isinstance(figures[k], float))
        + f"  [{seconds:.0f}s]",
        flush=True,
    )
    return figures


def _fixed_row(row: Row, config, run: Mapping[str, Any], evaluator) -> tuple[dict[str, Any], dict | None]:
    """The figures (and codes, where there are codes) of a row that trains nothing."""
    from ..models.hash_head import feature_statistics
    from .classical import itq_codes, lsh_codes

    db, queries = run["database_set"], run["test_set"]
    q_ids, db_ids = np.asarray(queries.targets), np.asarray(db.targets)
    captioned = hasattr(evaluator, "relevances")
    if row.method in ("ideal", "text_oracle", "ridge", "ridge_itq") and not captioned:
        raise ValueError(
            f"row {row.name!r}: method {row.method!r} needs captioned data with held-out captions"
        )
    if row.method == "ideal":
        metrics: dict[str, Any] = {}
        for name, provider in evaluator.relevances.items():
            vectors = relevance_vectors(provider)
            one = copy_with(evaluator, relevances={name: provider})
            metrics.update(
                {k: v for k, v in one.score_embeddings(vectors[q_ids], vectors[db_ids], q_ids, db_ids).items()
                 if name in k or k == "k"}
            )  # fmt: skip
        metrics["relevances"] = list(evaluator.relevances)
        return metrics, None
    if row.method == "random":
        rng = np.random.default_rng(config.seed)
        x_q, x_db = rng.standard_normal((len(q_ids), 64)), rng.standard_normal((len(db_ids), 64))
        return evaluator.score_embeddings(x_q, x_db, q_ids, db_ids), None
    targets = None
    if row.method in ("text_oracle", "ridge", "ridge_itq"):
        from ..losses.variants import inner_loss

        provider = getattr(inner_loss(run["loss_fn"]), "semantic_distance", None)
        targets = getattr(
            getattr(provider, "base", provider), "mean_embeddings", None
        )  # under a PowerDistance
        if targets is None:
            raise ValueError(
                f"row {row.name!r}: {row.method} needs a caption-set provider (variant sim/shrewd)"
            )
        targets = targets.numpy().astype(np.float64)
    if row.method == "text_oracle":
        z_db, z_q = itq_codes(targets[db_ids], targets[q_ids], config.num_bits, config.seed)
    else:
        # Fitted on what the trained rows train on (the train set; with held-out classes, less
        # than the database), applied to the database and the queries.
        fit_set = run["train_set"]
        x_fit, x_db, x_q = fit_set.features.numpy(), db.features.numpy(), queries.features.numpy()
        fit_ids = np.asarray(fit_set.targets)
        mean, std = feature_statistics(x_fit)  # the heads' standardisation
        x_fit, x_db, x_q = (x_fit - mean) / std, (x_db - mean) / std, (x_q - mean) / std
        if row.method == "features":
            return evaluator.score_embeddings(x_q, x_db, q_ids, db_ids), None
        if row.method in ("ridge", "ridge_itq"):
            from sklearn.linear_model import Ridge

            fit = Ridge(alpha=1000.0).fit(x_fit, targets[fit_ids])  # the training images' targets only
            x_fit, x_db, x_q = fit.predict(x_fit), fit.predict(x_db), fit.predict(x_q)
            if row.method == "ridge":
                return evaluator.score_embeddings(x_q, x_db, q_ids, db_ids), None
        coder = lsh_codes if row.method == "lsh" else itq_codes
        _, z = coder(x_fit, np.concatenate([x_db, x_q]), config.num_bits, config.seed)
        z_db, z_q = z[: len(x_db)], z[len(x_db) :]
    codes = dict(query_codes=z_q, query_labels=q_ids, db_codes=z_db, db_labels=db_ids)
    return evaluator.score(z_q, z_db, q_ids, db_ids), codes


def data_root(data_path: str | None) -> str | None:
    """The folder item names are stored relative to: ``data_path`` itself, or the folder of a
    file such as ``captions.csv``."""
    if not data_path:
        return None
    return data_path if os.path.isdir(data_path) else os.path.dirname(os.path.abspath(data_path))


def copy_with(obj: Any, **attributes: Any) -> Any:
    """A shallow copy of ``obj`` with ``attributes`` set."""
    import copy

    other = copy.copy(obj)
    for name, value in attributes.items():
        setattr(other, name, value)
    return other


def relevance_vectors(provider: Any) -> np.ndarray:
    """The vectors whose cosine is a caption relevance (``1 - d`` as a monotone function of it):
    a caption-set provider's mean embeddings, a word provider's TF-IDF rows."""
    if hasattr(provider, "vectors"):
        return provider.vectors.toarray().astype(np.float32)
    return provider.embeddings.numpy().astype(np.float32)


def _run_in_worker(args: tuple) -> dict[str, Any]:
    import torch

    threads, *rest = args
    torch.set_num_threads(threads)
    return run_row(*rest[:-1], **rest[-1])


def _saved_row_path(out: str | os.PathLike, row: Row) -> Path:
    from .report import variant_slug

    return Path(out) / "rows" / f"{variant_slug(row.name)}.json"


def _row_spec(row: Row, overrides: Mapping[str, Any]) -> str:
    """What a row's figures depend on (its config file, method and overrides, the run's
    overrides), as canonical JSON: a saved row is reused only when all of it matches."""
    spec = dict(
        config=os.path.abspath(row.config),
        method=row.method,
        overrides=dict(row.overrides),
        run_overrides={k: v for k, v in overrides.items() if k != "output_dir"},
    )
    return json.dumps(spec, sort_keys=True, default=str)


def _save_row(out: str | os.PathLike, row: Row, overrides: Mapping[str, Any], figures: Mapping) -> None:
    path = _saved_row_path(out, row)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    payload = dict(spec=json.loads(_row_spec(row, overrides)), figures=figures)
    tmp.write_text(json.dumps(payload, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))
    os.replace(tmp, path)  # atomic: a reader sees a whole row or none


def _load_saved_row(out: str | os.PathLike, row: Row, overrides: Mapping[str, Any]) -> dict | None:
    path = _saved_row_path(out, row)
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    if json.dumps(saved.get("spec"), sort_keys=True) != _row_spec(row, overrides):
        return None  # the row changed since: run it again
    return saved["figures"]


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
    resume: bool = False,
) -> dict[str, dict[str, Any]]:
    """Every row's figures, by row name; ``workers > 1`` runs rows in parallel spawned processes
    with ``threads`` torch threads each (default 1; on 2 cores two 1-thread runs finish sooner
    than one 2-thread run after another: the head's matmuls are small). Sequential runs use
    ``threads`` too (default: all), restored afterwards. With the same ``threads`` the figures
    do not depend on ``workers``.

    Each finished row's figures are written to ``out/rows/<row>.json`` as it finishes; a row
    that fails does not stop the others, and the error, raised once all have run, names the
    failed rows. ``resume=True`` reuses the saved rows whose config, method and overrides
    (the row's and the run's) are unchanged, and runs only the rest."""
    check_rows(rows, overrides)
    kwargs = dict(extra_hierarchies=extra_hierarchies, probe_samples=probe_samples, runs_dir=runs_dir)
    results: dict[str, dict[str, Any]] = {}
    if resume:
        for row in rows:
            saved = _load_saved_row(out, row, overrides)
            if saved is not None:
                print(f"{row.name:<48} reused from {_saved_row_path(out, row)}", flush=True)
                results[row.name] = saved
    todo = [row for row in rows if row.name not in results]
    failures: dict[str, BaseException] = {}

    def finished(row: Row, figures: dict[str, Any]) -> None:
        _save_row(out, row, overrides, figures)
        results[row.name] = figures

    if workers <= 1:
        import torch

        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)  # the same kernels as in the workers: the same figures
        try:
            for row in todo:
                try:
                    finished(row, run_row(row, overrides, out, **kwargs))
                except Exception as error:  # the other rows still run and are kept
                    failures[row.name] = error
        finally:
            torch.set_num_threads(before)
    elif todo:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
            futures = {
                pool.submit(_run_in_worker, (threads or 1, row, dict(overrides), out, kwargs)): row
                for row in todo
            }
            for future in as_completed(futures):
                try:
                    finished(futures[future], future.result())
                except Exception as error:
                    failures[futures[future].name] = error
    if failures:
        first = next(iter(failures.values()))
        raise RuntimeError(
            f"{len(failures)} of {len(rows)} benchmark rows failed: {sorted(failures)} (first error: "
            f"{type(first).__name__}: {first}); the {len(results)} finished rows are saved in "
            f"{Path(out) / 'rows'}: rerun with --resume to run only the failed ones"
        ) from first
    return {row.name: results[row.name] for row in rows}  # manifest order
