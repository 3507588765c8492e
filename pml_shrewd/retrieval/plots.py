"""Plots for hashing evaluation: HP@k curves and code-value / bit-balance histograms.

Each function writes a PNG (matplotlib's Agg backend, no display needed) and, beside it,
a JSON file with the same stem holding the plotted numbers, so figures can be redrawn
or compared without rerunning an evaluation. HP@k follows Barz & Denzler (WACV 2019)
as used by Arponen & Bishop (arXiv 2005.04917).

Example::

    curves = {"binary": hp_at_k(qb, db, ql, dl, provider), "continuous": hp_at_k(qz, dz, ql, dl, provider, distance="l1")}
    plot_hp_curves(curves, "out/hp.png", title="CIFAR-100, 64 bits")
    plot_code_histogram(db_z, "out/codes.png")
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: works on headless machines
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .codes import to_numpy  # noqa: E402

__all__ = ["plot_hp_curves", "plot_code_histogram"]


def _png_path(path: str | Path) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        path = path.with_suffix(".png") if path.suffix else path.with_name(path.name + ".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def plot_hp_curves(curves: Mapping[str, Any], path: str | Path, title: str | None = None) -> Path:
    """Plot HP@k curves of several models / code kinds on one axes (x = k, y = HP@k).

    Args:
        curves: name -> HP@1..HP@k values (e.g. from :func:`hp_at_k`; lengths may differ).
        path: output PNG path (``.png`` is added if missing); ``<stem>.json`` holds the data.
        title: optional figure title.

    Returns:
        The PNG path.

    Example::

        plot_hp_curves({"SHREWD binary": hp_bin, "SHREWD continuous": hp_cont}, "hp.png")
        plot_hp_curves({"16 bits": c16, "64 bits": c64}, "bits.png", title="CIFAR-100")
        json.loads(Path("hp.json").read_text())["curves"]["16 bits"]
    """
    if not isinstance(curves, Mapping) or not curves:
        raise ValueError("curves must be a non-empty mapping of name -> HP@k values")
    data: dict[str, list[float]] = {}
    for name, values in curves.items():
        arr = np.asarray(to_numpy(values, f"curve {name!r}"), dtype=np.float64)
        if arr.ndim != 1 or arr.size == 0:
            raise ValueError(f"curve {name!r} must be a non-empty 1-D sequence, got shape {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"curve {name!r} contains NaN or infinite values")
        data[str(name)] = arr.tolist()
    path = _png_path(path)
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    try:
        for name, values in data.items():
            ax.plot(np.arange(1, len(values) + 1), values, label=name)
        ax.set_xlabel("k (number of retrieved items)")
        ax.set_ylabel("hierarchical precision HP@k")
        ax.set_xlim(1, max(len(v) for v in data.values()))
        low = min(min(v) for v in data.values())
        ax.set_ylim(min(0.0, low) if low < 0.3 else np.floor(low * 20) / 20, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
        if title:
            ax.set_title(title)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    payload = {"title": title, "x": "k", "y": "HP@k", "curves": data}
    path.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    return path


def plot_code_histogram(codes: Any, path: str | Path, title: str | None = None, bins: int = 50) -> Path:
    """Histogram of continuous code values and a bar chart of each bit's mean (its balance).

    Near-binary codes (the aim of the KL term of SHREWD) pile up at 0 and 1; a balanced
    bit has mean about 0.5 after binarisation at 0.5. The JSON beside the PNG holds the
    histogram counts, bin edges, per-bit means of the values and of the bits.

    Args:
        codes: ``(N, K)`` continuous codes (numpy or torch), typically in ``[0, 1]``.
        path: output PNG path; ``<stem>.json`` holds the data.
        title: optional figure title.
        bins: histogram bins.

    Returns:
        The PNG path.

    Example::

        plot_code_histogram(torch.sigmoid(model(x)), "codes.png", title="epoch 10")
        stats = json.loads(Path("codes.json").read_text())
        print(stats["bit_means"])
    """
    arr = np.asarray(to_numpy(codes, "codes"), dtype=np.float64)
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"codes must be a non-empty 2-D (N, K) array, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("codes contain NaN or infinite values")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins <= 0:
        raise ValueError(f"bins must be a positive integer, got {bins!r}")
    lo, hi = min(0.0, float(arr.min())), max(1.0, float(arr.max()))
    counts, edges = np.histogram(arr, bins=bins, range=(lo, hi))
    value_means = arr.mean(axis=0)
    threshold = 0.0 if lo < 0 else 0.5  # signed codes binarise at 0
    bit_means = (arr > threshold).mean(axis=0)
    path = _png_path(path)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    try:
        ax1.bar(edges[:-1], counts, width=np.diff(edges), align="edge")
        ax1.set_xlabel("code value")
        ax1.set_ylabel("count")
        ax1.set_title("code values")
        ax2.bar(np.arange(arr.shape[1]), bit_means)
        ax2.axhline(0.5, color="k", lw=0.8, ls="--")
        ax2.set_ylim(0, 1)
        ax2.set_xlabel("bit")
        ax2.set_ylabel(f"fraction of codes > {threshold:g}")
        ax2.set_title("per-bit balance")
        if title:
            fig.suptitle(title)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    payload = {
        "title": title,
        "num_codes": int(arr.shape[0]),
        "num_bits": int(arr.shape[1]),
        "threshold": threshold,
        "histogram": {"counts": counts.tolist(), "edges": edges.tolist()},
        "value_means": value_means.tolist(),
        "bit_means": bit_means.tolist(),
        "bit_balance": float(np.abs(bit_means - 0.5).mean()),
    }
    path.with_suffix(".json").write_text(json.dumps(payload, indent=1))
    return path
