"""PCK's uncertainty: 95% intervals over image pairs and the best head held out, from the per-pair counts of
`correspondence.semantic_correspondence`.

PCK is a mean over keypoints, but the keypoints of one pair share its images, so the independent units are pairs:
the interval is a cluster bootstrap that resamples whole pairs (`intervals.bootstrap_ratio` of correct keypoints
over usable keypoints, summed over the resampled pairs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from analyses import heads, intervals
from analyses.correspondence import PAIR
from store.schema import KV_HEAD, LAYER

METHOD = "cluster bootstrap over image pairs (PCK pooled over their keypoints)"


def pck_intervals(result: xr.Dataset, seed: int = 0) -> xr.Dataset:
    """Per (layer, kv_head): `pck`, `pck_low`, `pck_high` (95% interval resampling pairs) and `pck_n` (pairs)."""
    correct = result.pair_correct.transpose(PAIR, LAYER, KV_HEAD).values
    keypoints = result.pair_keypoints.values
    shape = correct.shape[1:]
    found = [intervals.bootstrap_ratio(correct[:, li, hi], keypoints, seed=seed) for li, hi in np.ndindex(shape)]
    fields = {name: np.array([getattr(i, name) for i in found]).reshape(shape) for name in intervals.INTERVAL_FIELDS}
    dims = (LAYER, KV_HEAD)
    return xr.Dataset({"pck": (dims, fields["estimate"]), "pck_low": (dims, fields["low"]),
                       "pck_high": (dims, fields["high"]), "pck_n": (dims, fields["n"])},
                      coords={LAYER: result[LAYER].values, KV_HEAD: result[KV_HEAD].values},
                      attrs={"interval": METHOD, "confidence": intervals.CONFIDENCE})


def held_out_pck(result: xr.Dataset, seed: int = 0) -> heads.HeldOut:
    """The head with the highest PCK on a seeded half of the pairs (`heads.split`), and its PCK on the other half
    with the interval resampling those pairs."""
    splits = heads.split(result.sizes[PAIR], seed)
    correct = result.pair_correct.transpose(PAIR, LAYER, KV_HEAD)
    keypoints = result.pair_keypoints.values
    chosen = splits == heads.SELECTION
    selection = correct[chosen].sum(PAIR) / keypoints[chosen].sum()
    layer, head = heads.best_head(selection)
    report = correct.sel({LAYER: layer, KV_HEAD: head}).values[~chosen]
    interval = intervals.bootstrap_ratio(report, keypoints[~chosen], seed=seed)
    return heads.HeldOut(layer, head, float(selection.sel({LAYER: layer, KV_HEAD: head})), interval)


def grid_json(grid: xr.Dataset) -> dict[str, Any]:
    """`pck_intervals` as JSON: the layers, the KV heads and (layer, kv_head) nested lists (NaN as None)."""
    def plain(values: np.ndarray) -> list:
        return [[None if np.isnan(v) else float(v) for v in row] for row in values.astype(np.float64)]

    return {LAYER: [int(v) for v in grid[LAYER].values], KV_HEAD: [int(v) for v in grid[KV_HEAD].values],
            "estimate": plain(grid.pck.values), "low": plain(grid.pck_low.values), "high": plain(grid.pck_high.values),
            "n": plain(grid.pck_n.values), "interval": METHOD}
