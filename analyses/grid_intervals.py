"""Per-head score grids with their uncertainty: a 95% interval per (layer, KV head) over the independent units
behind the score (image pairs, videos), and the best head chosen on half the units and reported on the other.

A score such as PCK is a ratio pooled over items (keypoints, source tokens) that belong to units (pairs): items of
one unit share its images, so the interval is a cluster bootstrap resampling whole units
(`intervals.bootstrap_ratio` of the per-unit numerators over the per-unit denominators). A mean over units (J&F
per video) resamples the units' scores (`intervals.bootstrap_mean`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from analyses import heads, intervals
from store.schema import KV_HEAD, LAYER

METHOD = "percentile bootstrap over {unit}s (95%)"
RESAMPLES_PER_BLOCK = 250  # resamples per matrix product (memory: 250 x units counts)


def ratio_grid(numerators: xr.DataArray, denominators: xr.DataArray | None = None, seed: int = 0) -> xr.Dataset:
    """Per (layer, kv_head) of `numerators` (unit, layer, kv_head), pooled over `denominators` (unit,) (None: the
    mean over units, NaN left out): `estimate`, `low`, `high` (95% interval resampling units) and `n` (units)."""
    unit = numerators.dims[0] if denominators is None else denominators.dims[0]
    values = numerators.transpose(unit, LAYER, KV_HEAD).values
    shape = values.shape[1:]
    if denominators is None:
        found = [intervals.bootstrap_mean(values[:, li, hi], seed=seed) for li, hi in np.ndindex(shape)]
        fields = {name: np.array([getattr(i, name) for i in found]) for name in intervals.INTERVAL_FIELDS}
    else:
        fields = pooled_ratios(values.reshape(len(values), -1), denominators.values, seed=seed)
    dims = (LAYER, KV_HEAD)
    return xr.Dataset({name: (dims, np.asarray(fields[name]).reshape(shape)) for name in intervals.INTERVAL_FIELDS},
                      coords={LAYER: numerators[LAYER].values, KV_HEAD: numerators[KV_HEAD].values},
                      attrs={"interval": METHOD.format(unit=unit), "confidence": intervals.CONFIDENCE})


def pooled_ratios(numerators: np.ndarray, denominators: np.ndarray, n_resamples: int = intervals.N_RESAMPLES,
                  seed: int = 0, confidence: float = intervals.CONFIDENCE) -> dict[str, np.ndarray]:
    """`intervals.bootstrap_ratio` for many scores at once: sum(numerators[:, j]) / sum(denominators) for every
    column j of `numerators` (units, scores), with `n` and percentile intervals from one set of resampled units (units with
    a zero denominator count as none). Resample counts times the data in one matrix product, where a bootstrap per
    score would build every resample of every score (minutes for a few hundred heads and thousands of pairs)."""
    keep = np.asarray(denominators) > 0
    values, totals = np.asarray(numerators, np.float64)[keep], np.asarray(denominators, np.float64)[keep]
    n = len(totals)
    if n == 0:
        nan = np.full(values.shape[1], np.nan)
        return {"estimate": nan, "low": nan, "high": nan, "n": np.zeros(values.shape[1], np.int64)}
    estimate = values.sum(0) / totals.sum()
    rng, ratios = np.random.default_rng(seed), []
    for start in range(0, n_resamples, RESAMPLES_PER_BLOCK):
        k = min(RESAMPLES_PER_BLOCK, n_resamples - start)
        draws = rng.integers(0, n, (k, n))
        counts = np.bincount((np.arange(k)[:, None] * n + draws).ravel(), minlength=k * n).reshape(k, n)
        ratios.append((counts @ values) / (counts @ totals)[:, None])
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(np.concatenate(ratios), [tail, 100 - tail], axis=0)
    if n == 1:
        low, high = estimate, estimate
    return {"estimate": estimate, "low": low, "high": high, "n": np.full(values.shape[1], n)}


def held_out(numerators: xr.DataArray, denominators: xr.DataArray | None = None, seed: int = 0) -> heads.HeldOut:
    """The head with the highest score (as in `ratio_grid`) on a seeded half of the units (`heads.split`), and
    its score on the other half with the interval resampling those units."""
    unit = numerators.dims[0] if denominators is None else denominators.dims[0]
    chosen = heads.split(numerators.sizes[unit], seed) == heads.SELECTION
    values = numerators.transpose(unit, LAYER, KV_HEAD)
    if denominators is None:
        selection = values[chosen].mean(unit, skipna=True)
    else:
        selection = values[chosen].sum(unit) / denominators.values[chosen].sum()
    layer, head = heads.best_head(selection)
    report = values.sel({LAYER: layer, KV_HEAD: head}).values[~chosen]
    interval = _interval(report, None if denominators is None else denominators[~chosen], seed)
    return heads.HeldOut(layer, head, float(selection.sel({LAYER: layer, KV_HEAD: head})), interval)


def _interval(values: np.ndarray, denominators: xr.DataArray | None, seed: int) -> intervals.Interval:
    if denominators is None:
        return intervals.bootstrap_mean(values, seed=seed)
    return intervals.bootstrap_ratio(values, np.asarray(denominators), seed=seed)


def grid_json(grid: xr.Dataset) -> dict[str, Any]:
    """A `ratio_grid` as JSON: the layers, the KV heads and (layer, kv_head) nested lists (NaN as None)."""
    def plain(values: np.ndarray) -> list:
        return [[None if np.isnan(v) else float(v) for v in row] for row in values.astype(np.float64)]

    return {LAYER: [int(v) for v in grid[LAYER].values], KV_HEAD: [int(v) for v in grid[KV_HEAD].values],
            **{name: plain(grid[name].values) for name in intervals.INTERVAL_FIELDS}, "interval": grid.attrs["interval"]}
