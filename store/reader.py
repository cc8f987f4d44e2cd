"""Open a store as xarray objects backed by dask, with logical dtypes (bfloat16) restored."""

from __future__ import annotations

from pathlib import Path

import dask.array as da
import ml_dtypes
import numpy as np
import xarray as xr
from dask.base import tokenize

from store import location, schema, shard_io

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


CHUNKINGS = ("shards", "inner")
# Dask chunk targets for chunks="shards": whole shards (or zarr chunks) along samples, whole along other axes.
# Dask spends about a millisecond per chunk and a reduction over samples adds partial results per chunk, so
# activations get many samples per chunk; the token table and per-sample fields, read sample by sample by most
# analyses, get small chunks.
ACTIVATION_CHUNK_BYTES = 32 << 20
TABLE_CHUNK_BYTES = 1 << 20


def open(path: str | Path, chunks: str = "shards") -> xr.Dataset:  # noqa: A001 - mirrors xarray.open_zarr
    """The activations, token table and per-sample metadata of the store at `path`.

    Dims: see `store.schema`. Coordinates `layer` and `stream` hold the captured layer indices.
    Arrays stored as raw bf16 bits come back as `ml_dtypes.bfloat16`; nothing is read until computed.
    `chunks`: "shards" (default) gives dask chunks of whole shards (all layers and heads of a token block) of
    about 32 MB, read through tensorstore for local stores; the cheapest way to read much of a store. "inner":
    zarr's inner chunks (one layer / head of a batch) read by zarr-python, for a few layers of a few samples.
    """
    if chunks not in CHUNKINGS:
        raise ValueError(f"unknown chunks {chunks!r} (choose from {', '.join(CHUNKINGS)})")
    source = _zarr_source(path)
    if chunks == "inner":
        return _restore_logical_dtypes(xr.open_zarr(source, consolidated=False))
    dataset = xr.open_zarr(source, consolidated=False, chunks=None)
    folder = Path(path) if not location.is_url(path) and Path(path).is_dir() else None
    for name, variable in dataset.data_vars.items():
        dask_chunks = _chunks_of_whole_shards(variable)
        if folder is not None and variable.dtype.kind in "biuf":  # tensorstore reads no strings
            reader = shard_io.ArrayReader(folder / name)
            data = da.from_array(reader, chunks=dask_chunks, name=f"{name}-{tokenize(str(folder.resolve()), name, variable.shape)}")
            dataset[name] = xr.Variable(variable.dims, data, variable.attrs, encoding=variable.encoding)
        else:
            dataset[name] = variable.chunk(dict(zip(variable.dims, dask_chunks, strict=True)))
    return _restore_logical_dtypes(dataset)


def _chunks_of_whole_shards(variable: xr.Variable) -> tuple[int, ...]:
    """Whole shards (sharded arrays) or zarr chunks along `sample`, as many as fit the byte target; other axes:
    the shard's extent (sharded) or whole."""
    shards = variable.encoding.get("shards")
    unit = shards or tuple(c if d == schema.SAMPLE else n
                           for d, c, n in zip(variable.dims, variable.encoding["chunks"], variable.shape, strict=True))
    if schema.SAMPLE not in variable.dims:
        return unit
    target = ACTIVATION_CHUNK_BYTES if shards else TABLE_CHUNK_BYTES
    itemsize = variable.dtype.itemsize if variable.dtype.kind in "biuf" else 64
    units = max(1, target // (int(np.prod(unit)) * itemsize))
    axis = variable.dims.index(schema.SAMPLE)
    return tuple(min(n * units, variable.shape[axis]) if i == axis else n for i, n in enumerate(unit))


def open_lens(path: str | Path) -> xr.Dataset:
    """The `lens/` group: final norm weight (+ eps attr), unembedding, vocabulary, down_proj weights."""
    return _restore_logical_dtypes(xr.open_zarr(_zarr_source(path), group=schema.LENS_GROUP, consolidated=False))


def _zarr_source(path: str | Path):
    """What xarray opens: local paths as they are, URLs as zarr stores with this project's fsspec options."""
    return location.zarr_store(path, read_only=True) if location.is_url(path) else path
