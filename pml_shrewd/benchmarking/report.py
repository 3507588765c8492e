"""Benchmark outputs: the markdown table, BENCHMARKS.md sections, HP@k plots, codes as npz."""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def variant_slug(name: str) -> str:
    """File name (without ``.npz``) of a row's codes: ``"L_KL + L_cls"`` -> ``"L_KL___L_cls"``."""
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def save_codes(
    path: str | Path,
    codes: Mapping[str, np.ndarray],
    query_names: Sequence[str],
    db_names: Sequence[str],
    bits: int,
) -> None:
    """Binary codes (packed bits), labels and item names of queries and database, so anyone can
    recompute the figures with their own metric (``unpack_codes(f["test_codes"], f["bits"])``)."""
    from ..retrieval import pack_codes

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
