"""The best (layer, KV head) chosen on one split of the units (images, episodes, trials) and reported on the other.

The maximum over a few hundred heads' scores on one set of images is biased upward (it picks the heads that were
lucky on those images), so a per-head analysis reports its best head's score on units the choice never saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from analyses.intervals import Interval
from store.schema import KV_HEAD, LAYER

SELECTION, REPORT = "selection", "report"


def split(n_units: int, seed: int = 0) -> np.ndarray:
    """(n_units,) "selection" / "report": a seeded random half of the units each (selection gets the odd one)."""
    order = np.random.default_rng(seed).permutation(n_units)
    out = np.full(n_units, REPORT, dtype=object)
    out[order[: (n_units + 1) // 2]] = SELECTION
    return out


def best_head(grid: xr.DataArray) -> tuple[int, int]:
    """(layer, kv_head) coordinates of the highest score of a (layer, kv_head) grid, NaN ignored (ties: first)."""
    if np.all(np.isnan(grid.values)):
        raise ValueError("no head has a score on the selection split")
    li, hi = np.unravel_index(int(np.nanargmax(grid.values)), grid.shape)
    return int(grid[LAYER].values[li]), int(grid[KV_HEAD].values[hi])


@dataclass(frozen=True)
class HeldOut:
    """The head chosen on the selection split, its score there, and its score on the report split with n and a 95%
    interval over the report split's units."""

    layer: int
    kv_head: int
    selection_score: float
    report: Interval

    def as_dict(self) -> dict[str, Any]:
        return {LAYER: self.layer, KV_HEAD: self.kv_head, "chosen_on": SELECTION,
                "selection_score": self.selection_score, "reported_on": REPORT, **self.report.as_dict()}
