"""Open a store as xarray objects backed by dask, with logical dtypes (bfloat16) restored."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import ml_dtypes
import numpy as np
import xarray as xr

from store import schema

LOGICAL_NUMPY = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}


def _restore_logical_dtypes(dataset: xr.Dataset) -> xr.Dataset:
    for name, variable in dataset.variables.items():
        logical = variable.attrs.get(schema.ATTR_LOGICAL_DTYPE)
        if logical is None:
            continue
        target = LOGICAL_NUMPY[logical]
        data = variable.data
        if isinstance(data, da.Array):
            data = data.map_blocks(lambda block, t=target: block.view(t), dtype=target)
        else:
            data = np.asarray(data).view(target)
        attrs = {k: v for k, v in variable.attrs.items() if k != schema.ATTR_LOGICAL_DTYPE}
        dataset[name] = xr.Variable(
            variable.dims, data, attrs, encoding=variable.encoding
        )
    return dataset


def open(path: str | Path) -> xr.Dataset:  # noqa: A001 - mirrors xarray.open_zarr
    """The activations, token table and per-sample metadata of the store at `path`.

    Dims: see `store.schema`. Coordinates `layer` and `stream` hold the captured layer indices.
    Arrays stored as raw bf16 bits come back as `ml_dtypes.bfloat16`; nothing is read until computed.
    """
    dataset = xr.open_zarr(path, consolidated=False)
    return _restore_logical_dtypes(dataset)


def open_lens(path: str | Path) -> xr.Dataset:
    """The `lens/` group: final norm weight (+ eps attr), unembedding, vocabulary, down_proj weights."""
    return _restore_logical_dtypes(xr.open_zarr(path, group=schema.LENS_GROUP, consolidated=False))
