"""Figures outline what the threshold flags, and nothing when the dip test gave no threshold."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

from analyses import figures  # noqa: E402
from store.schema import KV_HEAD, LAYER  # noqa: E402


def _outlined(figure) -> int:
    return sum(isinstance(p, plt.Rectangle) and not p.get_fill() for p in figure.axes[0].patches)


def test_variance_heatmap_outlines_the_keys_below_the_threshold_and_none_without_one():
    values = xr.DataArray(np.array([[0.1, 2.0], [3.0, 0.2], [4.0, 5.0]]), dims=(LAYER, KV_HEAD),
                          coords={LAYER: [0, 1, 2], KV_HEAD: [0, 1]})
    assert _outlined(figures.variance_heatmap(values, 1.0)) == 2
    unthresholded = figures.variance_heatmap(values, None)
    assert _outlined(unthresholded) == 0 and "not bimodal" in unthresholded.axes[0].get_title()
    plt.close("all")
