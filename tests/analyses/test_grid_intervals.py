"""Per-head grids with intervals over units: the same numbers as one bootstrap per head, and the held-out head."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from analyses import intervals
from analyses.grid_intervals import held_out, pooled_ratios, ratio_grid


def test_pooled_ratios_are_the_per_score_bootstrap():
    """One matrix product over shared resamples gives, score by score, what `intervals.bootstrap_ratio` gives
    (the same seeded draws of units), zero-denominator units left out of both."""
    rng = np.random.default_rng(3)
    denominators = rng.integers(0, 6, 40)
    numerators = rng.integers(0, 4, (40, 5)).astype(np.float64)
    found = pooled_ratios(numerators, denominators, seed=1)
    for j in range(5):
        reference = intervals.bootstrap_ratio(numerators[:, j], denominators, seed=1)
        assert found["n"][j] == reference.n  # the same up to the order of the sums
        assert (found["estimate"][j], found["low"][j], found["high"][j]) == \
            pytest.approx((reference.estimate, reference.low, reference.high), rel=1e-12)


def test_mean_over_videos_resamples_videos():
    """A mean over units (J&F per video): three videos scoring 0, 1, 1 at one head and NaN (no object) once at
    the other; the NaN video is left out, and the held-out head is the one ahead on the selection half."""
    scores = xr.DataArray(np.array([[[0.0, 0.2]], [[1.0, np.nan]], [[1.0, 0.4]]]), dims=("video", "layer", "kv_head"),
                          coords={"layer": [3], "kv_head": [0, 1]})
    grid = ratio_grid(scores)
    assert np.allclose(grid.estimate.values, [[2 / 3, 0.3]]) and grid.n.values.tolist() == [[3, 2]]
    assert grid.low.values[0, 0] == 0.0 and grid.high.values[0, 0] == 1.0
    chosen = held_out(scores)
    assert chosen.report.n == 1 and chosen.kv_head == 0
