"""Plots write a PNG plus a JSON of exactly the plotted data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pml_shrewd.retrieval import plot_code_histogram, plot_hp_curves


def test_plot_hp_curves_writes_png_and_json(tmp_path):
    curves = {"binary": np.linspace(1.0, 0.6, 30), "continuous": torch.linspace(1.0, 0.7, 25)}
    path = plot_hp_curves(curves, tmp_path / "figs" / "hp", title="test")
    assert path == tmp_path / "figs" / "hp.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(path.with_suffix(".json").read_text())
    np.testing.assert_allclose(data["curves"]["binary"], np.linspace(1.0, 0.6, 30))
    np.testing.assert_allclose(data["curves"]["continuous"], np.linspace(1.0, 0.7, 25), rtol=1e-6)
    assert data["title"] == "test"
    with pytest.raises(ValueError, match="non-empty"):
        plot_hp_curves({}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="NaN"):
        plot_hp_curves({"a": [1.0, float("nan")]}, tmp_path / "x.png")


def test_plot_code_histogram_writes_png_and_json(tmp_path):
    rng = np.random.default_rng(0)
    codes = rng.beta(0.3, 0.3, (200, 12))
    path = plot_code_histogram(codes, tmp_path / "codes.png", bins=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(path.with_suffix(".json").read_text())
    assert sum(data["histogram"]["counts"]) == codes.size
    ref_counts = [0] * 10  # explicit reference histogram on [0, 1]
    for v in codes.ravel():
        ref_counts[min(int(v * 10), 9)] += 1
    assert data["histogram"]["counts"] == ref_counts
    ref_bits = [float(np.mean([codes[i, j] > 0.5 for i in range(200)])) for j in range(12)]
    np.testing.assert_allclose(data["bit_means"], ref_bits)
    assert data["bit_balance"] == pytest.approx(np.mean([abs(b - 0.5) for b in ref_bits]))
    with pytest.raises(ValueError, match="2-D"):
        plot_code_histogram(codes[0], tmp_path / "bad.png")
