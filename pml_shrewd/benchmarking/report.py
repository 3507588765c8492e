"""Benchmark outputs: the markdown table, BENCHMARKS.md sections, HP@k plots, codes as npz."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def variant_slug(name: str) -> str:
    """File name (without ``.npz``) of a row's codes: ``"L_KL + L_cls"`` -> ``"L_KL___L_cls"``."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def rows_with_codes(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The rows of a benchmark's ``results`` whose codes were saved (``codes/<slug>.npz``): those
    with ``bits``; a row without (e.g. features ranked by cosine) has no codes file."""
    return [name for name, r in results.items() if r.get("bits")]


def saved_class_ids(codes: Mapping[str, np.ndarray], class_names: Sequence[str], source: str) -> list[int]:
    """The labels of ``class_names`` in a saved codes file, read from the class folders of its
    test image paths (``test_names``); a ``ValueError`` naming ``source`` for an unknown class."""
    from ..data.base import class_ids_of

    if "test_names" not in codes:
        raise ValueError(f"{source} needs codes saved with image paths (test_names)")
    labels = np.asarray(codes["test_labels"]).astype(int)
    classes = [""] * (int(labels.max()) + 1)  # a label no test image has keeps no name
    for name, label in zip(codes["test_names"], labels, strict=True):
        classes[label] = Path(str(name)).parent.name
    return class_ids_of(class_names, classes, source)


def save_codes(
    path: str | Path,
    codes: Mapping[str, np.ndarray],
    query_names: Sequence[str],
    db_names: Sequence[str],
    bits: int,
    root: str | None = None,
) -> None:
    """Binary codes (packed bits), labels and item names of queries and database, so anyone can
    recompute the figures with their own metric (``unpack_codes(f["test_codes"], f["bits"])``).
    Absolute paths are stored relative to ``root``, the data set's folder
    (:func:`portable_names`), so the file does not depend on where the data lay."""
    from ..retrieval import pack_codes

    query_names, db_names = portable_names(root, query_names, db_names)

    np.savez_compressed(
        path,
        test_codes=pack_codes((codes["query_codes"] > 0.5).astype(np.uint8)),
        train_codes=pack_codes((codes["db_codes"] > 0.5).astype(np.uint8)),
        test_labels=_small_ints(codes["query_labels"]),
        train_labels=_small_ints(codes["db_labels"]),
        test_names=np.asarray(list(query_names)),
        train_names=np.asarray(list(db_names)),
        bits=bits,
    )


def portable_names(root: str | None, *groups: Sequence[str]) -> tuple[list[str], ...]:
    """The groups of item names with each absolute path made relative to ``root`` (the data
    set's folder, e.g. ``images/x.jpg`` beside a ``captions.csv``, ``test/apple/a.jpg`` in a
    CIFAR folder), or, where some path lies outside it, to the deepest folder holding them all.
    Names that are not all absolute paths are left as they are."""
    names = [n for group in groups for n in group]
    if not names or not all(os.path.isabs(n) for n in names):
        return tuple(list(group) for group in groups)
    root = os.path.abspath(root) if root else None
    if root is None or any(os.path.commonpath([root, n]) != root for n in names):
        root = os.path.commonpath([os.path.dirname(n) for n in names])
    return tuple([os.path.relpath(n, root) for n in group] for group in groups)


def _small_ints(labels: Any) -> np.ndarray:
    """Labels as int16 (class ids) or int32 (e.g. the image ids of a captioned set)."""
    labels = np.asarray(labels)
    return labels.astype(np.int16 if labels.size == 0 or abs(labels).max() < 2**15 else np.int32)


def _cell(r: Mapping[str, Any], key: str, fmt: str = "{:.4f}") -> str:
    """A table cell: the row's figure, or empty where the row has none."""
    return "" if r.get(key) is None else fmt.format(r[key])


def markdown_table(report: Mapping[str, Any]) -> str:
    """The results table (and the claims) of a benchmark report."""
    k = report["k"]
    extra = list(report["hierarchies"][1:])
    head = ["variant", "bits", "mAP", f"mAHP@{k}", "mAP cont.", f"mAHP@{k} cont.", "drop mAHP"]
    head += [f"mAHP@{k} [{h}]" for h in extra] + ["probe acc", "bit balance"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        # Rows without codes (e.g. features ranked by cosine) leave the code-only cells empty.
        cell = functools.partial(_cell, r)
        cont, binary = r.get("mAHP@k_continuous"), r.get("mAHP@k")
        row = [
            name,
            str(r["bits"] or ""),
            cell("mAP"),
            cell("mAHP@k"),
            cell("mAP_continuous"),
            cell("mAHP@k_continuous"),
            "" if cont is None or binary is None else f"{cont - binary:+.4f}",
        ]
        row += [cell(f"mAHP@k [{h}]") for h in extra]
        row += [
            "" if r.get("probe_acc") is None else f"{100 * r['probe_acc']:.2f}%",
            cell("bit_balance", "{:.3f}"),
        ]
        lines.append("| " + " | ".join(row) + " |")
    if report.get("claims"):
        lines += ["", "| the paper's claim, checked on these figures | holds | figures |", "|---|---|---|"]
        lines += [
            f"| {claim} | {'yes' if c['holds'] else '**no**'} | {c['detail']} |"
            for claim, c in report["claims"].items()
        ]
    return "\n".join(lines) + "\n"


def update_benchmarks_md(path: str | Path, tag: str, title: str, bullets: Sequence[str], table: str) -> None:
    """Replace (or append) the generated section ``tag`` of a BENCHMARKS.md."""
    path = Path(path)
    start, end = f"<!-- {tag}:start -->", f"<!-- {tag}:end -->"
    section = "\n".join([start, f"### {title}", "", *[f"- {b}" for b in bullets], "", table, end])
    text = path.read_text() if path.is_file() else "# Benchmarks\n"
    if start in text and end in text:
        text = text[: text.index(start)] + section + text[text.index(end) + len(end) :]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def write_report(out: str | Path, report: Mapping[str, Any], curves: Mapping[str, Any], title: str) -> None:
    """``results.json``, ``table.md`` and ``hp_curves.png`` (+ its JSON) in ``out``."""
    from ..retrieval import plot_hp_curves

    out = Path(out)
    (out / "results.json").write_text(json.dumps(report, indent=2))
    (out / "table.md").write_text(
        (caption_markdown_table if "relevances" in report else markdown_table)(report)
    )
    if curves:
        plot_hp_curves(curves, out / "hp_curves.png", title=title)


def caption_markdown_table(report: Mapping[str, Any]) -> str:
    """The caption benchmark's table: per relevance, binary and continuous mAHP@k and nDCG@k."""
    k, rels = report["k"], report["relevances"]

    head = ["row", "bits"]
    for rel in rels:
        head += [f"mAHP@{k} [{rel}]", "cont.", "drop", f"nDCG@{k} [{rel}]"]
    head += ["bit balance", "seconds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in report["results"].items():
        row = [name, str(r["bits"] or "")]
        for rel in rels:
            b, c = r.get(f"mAHP@k [{rel}]"), r.get(f"mAHP@k_continuous [{rel}]")
            row += [
                _cell(r, f"mAHP@k [{rel}]"),
                _cell(r, f"mAHP@k_continuous [{rel}]"),
                "" if b is None or c is None else f"{c - b:+.4f}",
                _cell(r, f"nDCG@k [{rel}]"),
            ]
        row += [_cell(r, "bit_balance"), f"{r['seconds']:.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    if report.get("claims"):
        lines += ["", "| target | holds | figures |", "|---|---|---|"]
        lines += [
            f"| {claim} | {'yes' if c['holds'] else '**no**'} | {c['detail']} |"
            for claim, c in report["claims"].items()
        ]
    return "\n".join(lines) + "\n"


def seed_spread(
    reports: Mapping[int, Mapping[str, Any]], keys: Sequence[str], rows: Sequence[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per row and figure, the values of several seeds' benchmark reports (``{seed: results.json}``),
    their mean and sample standard deviation (``sd`` is ``None`` with one seed). Rows default to
    those every report has; a row or figure missing from one report is an error naming it."""
    names = list(rows) if rows is not None else [n for n in next(iter(reports.values()))["results"]
                                                 if all(n in r["results"] for r in reports.values())]  # fmt: skip
    spread: dict[str, dict[str, Any]] = {}
    for name in names:
        spread[name] = {}
        for key in keys:
            values = {}
            for seed, report in sorted(reports.items()):
                figures = report["results"].get(name)
                if figures is None or key not in figures:
                    raise KeyError(f"seed {seed}: no {key!r} for row {name!r}")
                values[seed] = float(figures[key])
            v = np.array(list(values.values()))
            spread[name][key] = dict(
                values=values, mean=float(v.mean()), sd=float(v.std(ddof=1)) if len(v) > 1 else None
            )
    return spread


def seed_spread_table(spread: Mapping[str, Mapping[str, Any]], keys: Sequence[str]) -> str:
    """Markdown: one line per row, ``v0 / v1 / v2 (mean, sd)`` per figure."""
    lines = ["| row | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, figures in spread.items():
        cells = []
        for key in keys:
            f = figures[key]
            sd = f"sd {f['sd']:.4f}" if f["sd"] is not None else "one seed"
            cells.append(
                " / ".join(f"{v:.4f}" for v in f["values"].values()) + f" (mean {f['mean']:.4f}, {sd})"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
