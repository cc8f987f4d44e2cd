"""Token norms on planted data, and the CLI on a captured store."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import store.reader
from analyses.token_norms import hidden_norms, mean_norm_by_kind, per_image_counts, register_fraction, with_intervals
from store.schema import TokenKind

REPO = Path(__file__).resolve().parents[2]


def planted() -> xr.Dataset:
    """2 samples, 1 stream, 12 token slots: 10 image tokens of norm 1 with one of norm 10, then 1 text, 1 pad."""
    hidden = np.zeros((2, 1, 12, 4), np.float32)
    hidden[:, 0, :10, 0] = 1.0
    hidden[0, 0, 3, :] = 5.0  # norm 10
    hidden[:, 0, 10, 1] = 3.0
    hidden[:, 0, 11, :] = 7.0  # padding: must be ignored
    kind = np.array([[TokenKind.IMAGE] * 10 + [TokenKind.TEXT, TokenKind.PAD]] * 2, np.int8)
    return xr.Dataset({"hidden": (("sample", "stream", "token", "d_model"), hidden),
                       "kind": (("sample", "token"), kind)}).chunk({"sample": 1})


def test_planted_norms():
    ds = planted()
    norms = hidden_norms(ds).compute()
    assert float(norms[0, 0, 3]) == 10.0 and np.isnan(norms[0, 0, 11])
    by_kind = mean_norm_by_kind(norms, ds.kind)
    assert list(by_kind.kind.values) == ["text", "image"]
    assert np.isclose(float(by_kind.sel(kind="text")[0]), 3.0)
    assert np.isclose(float(by_kind.sel(kind="image")[0]), (9 * 1 + 10 + 10 * 1) / 20)
    # sample 0: one image token of 10 is above mean + 2 std; sample 1: none (all equal)
    assert np.isclose(float(register_fraction(norms, ds.kind)[0]), 1 / 20)


def test_intervals_resample_images():
    """Two images: image norms 1.9 and 1.0 on average (10 tokens each), register fractions 1/10 and 0. The pooled
    estimates are 1.45 and 1/20; resampling the two images gives (a, a), (b, b) a quarter of the time each, so the
    interval runs from the one image's value to the other's."""
    ds = planted()
    curves = with_intervals(per_image_counts(hidden_norms(ds), ds.kind).compute())
    assert set(curves) == {"mean_norm:text", "mean_norm:image", "register_fraction"}
    image = curves["mean_norm:image"].isel(stream=0)
    assert np.isclose(image.estimate, 1.45) and np.isclose(image.low, 1.0) and np.isclose(image.high, 1.9)
    assert int(image.n) == 2
    registers = curves["register_fraction"].isel(stream=0)
    assert np.isclose(registers.estimate, 1 / 20) and registers.low == 0.0 and np.isclose(registers.high, 1 / 10)
    text = curves["mean_norm:text"].isel(stream=0)
    assert np.isclose(text.estimate, 3.0) and np.isclose(text.low, 3.0) and np.isclose(text.high, 3.0)


def test_cli_writes_results_and_figure(captured_store, tmp_path):
    result = subprocess.run([sys.executable, "-m", "analyses", "token-norms", "--store", str(captured_store),
                             "--out", str(tmp_path)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    results = json.loads((tmp_path / "token_norms.json").read_text())
    assert results["streams"] == [0, 1, 2] and "image" in results["mean_norm_by_kind"]
    ds = store.reader.open(captured_store)
    norms = hidden_norms(ds)
    image = results["mean_norm_by_kind"]["image"]  # the pooled means, with intervals around them
    assert np.allclose(image["estimate"], mean_norm_by_kind(norms, ds.kind).sel(kind="image").values, rtol=1e-5)
    assert np.allclose(results["register_fraction"]["estimate"], register_fraction(norms, ds.kind).values)
    assert all(low <= e <= high for low, e, high in zip(image["low"], image["estimate"], image["high"], strict=True))
    assert image["n"] == [ds.sizes["sample"]] * 3 and results["register_fraction_if_normal"] == pytest.approx(0.02275, abs=1e-5)
    assert (tmp_path / "token_norms.png").read_bytes()[:4] == b"\x89PNG"
