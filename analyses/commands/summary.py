"""Pieces of what the analysis commands write: figure titles and the best (layer, KV head) of a score grid."""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from store.schema import KV_HEAD, LAYER, CaptureConfig


def title(ds: xr.Dataset) -> str:
    """"MODEL on DATASET" of a store, for figure titles."""
    config = CaptureConfig.of(ds.attrs)
    return f"{config.model} on {config.dataset}"


def best(scores: xr.DataArray) -> dict[str, Any]:
    """The highest score of a (layer, kv_head) grid (NaN ignored) and where it is."""
    flat = int(np.nanargmax(scores.values))
    li, hi = np.unravel_index(flat, scores.shape)
    return {"score": float(scores.values[li, hi]), LAYER: int(scores.layer.values[li]),
            KV_HEAD: int(scores.kv_head.values[hi])}
