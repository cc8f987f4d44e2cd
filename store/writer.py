"""Create, resume and fill a store. One background thread writes whole shards so compute and I/O overlap.

The sharded activation arrays of local stores are written through tensorstore (see `store.shard_io`), the rest
through zarr-python.

A shard's completion record (`progress/shard_complete[i] = 1`) is written only after every array of
that shard is on disk, so a killed capture never leaves a half-written shard that looks complete; on
resume such a shard is simply written again, whole.
"""

from __future__ import annotations

import errno
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from store import schema, shard_io
from store.layout import ArraySpec, StorePlan, token_slots_for


class StoreError(Exception):
    """A store that cannot be created, resumed or written (one clear line)."""


@dataclass
class ShardPayload:
    """Everything of one shard: arrays keyed by name, sample axis first, token axis padded to `n_tokens_max`."""

    shard: int
    arrays: dict[str, np.ndarray]
    n_tokens_max: int
    nbytes: int = 0

    def __post_init__(self) -> None:
        self.nbytes = sum(a.nbytes for a in self.arrays.values() if a.dtype != object)


def _create_array(group: zarr.Group, spec: ArraySpec) -> zarr.Array:
    attrs: dict[str, Any] = {}
    if spec.logical_dtype in schema.LOGICAL_TO_STORAGE:
        attrs[schema.ATTR_LOGICAL_DTYPE] = spec.logical_dtype
    if spec.logical_dtype == "str":
        compressors: Any = "auto"  # zarr's default for variable-length strings
    elif spec.compression == "none":
        compressors = None
    else:
        compressors = ZstdCodec(level=1)
    return group.create_array(
        spec.name,
        shape=spec.shape,
        dtype=spec.storage_dtype,
        chunks=spec.chunks,
        shards=spec.shards,
        fill_value=spec.fill_value,
        dimension_names=spec.dims,
        compressors=compressors,
        attributes=attrs,
    )


def create_store(path: Path, plan: StorePlan, attrs: dict[str, Any], lens: dict[str, Any]) -> zarr.Group:
    """A new, empty store at `path` (which must not exist) with all arrays, the lens group and progress."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(zarr.storage.LocalStore(path), mode="w-", zarr_format=3)
    except (PermissionError, OSError) as error:
        raise StoreError(f"cannot create store at {path}: {error.strerror or error}") from None
    root.attrs.update(attrs)
    for spec in plan.arrays():
        _create_array(root, spec)
    for name, indices in ((schema.LAYER, plan.layers), (schema.STREAM, plan.streams)):
        coordinate = root.create_array(name, shape=(len(indices),), dtype="int32", dimension_names=(name,))
        coordinate[...] = np.asarray(indices, dtype=np.int32)
    progress = root.create_group(schema.PROGRESS_GROUP)
    progress.create_array(
        schema.SHARD_COMPLETE, shape=(plan.n_shards,), chunks=(1,), dtype="int8", fill_value=0,
        dimension_names=(schema.SHARD,),
    )
    _write_lens(root.create_group(schema.LENS_GROUP), lens)
    return root


def _write_lens(group: zarr.Group, lens: dict[str, Any]) -> None:
    """Write lens arrays: name -> (dims, data, logical dtype, attrs).

    `data` is a numpy array, or a list of per-layer arrays (written one at a time to bound memory).
    """
    group.attrs.update(lens.get("attrs", {}))
    for name, (dims, data, logical, attrs) in lens["arrays"].items():
        parts = data if isinstance(data, list) else None
        shape = (len(parts), *parts[0].shape) if parts else data.shape
        # One layer per chunk for per-layer weights; otherwise blocks of up to 4096 along each axis.
        chunks = tuple(1 if (i == 0 and parts) else min(n, 4096) for i, n in enumerate(shape))
        spec = ArraySpec(name, dims, shape, logical, chunks, None, "" if logical == "str" else 0)
        array = _create_array(group, spec)
        array.attrs.update(attrs)
        if parts:
            for index, part in enumerate(parts):
                array[index] = part
        else:
            array[...] = data


def open_for_resume(path: Path, attrs: dict[str, Any], overwrite: bool) -> zarr.Group | None:
    """The existing store at `path` if its capture config equals ours; None if there is none.

    Raises StoreError when `path` holds something else or a different configuration (unless
    `overwrite`, in which case the caller recreates it).
    """
    if not path.exists():
        return None
    try:
        root = zarr.open_group(zarr.storage.LocalStore(path), mode="r+")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, json.JSONDecodeError):
        raise StoreError(f"{path} exists and is not an activation store; choose another --out") from None
    if root.attrs.get(schema.ATTR_FORMAT) != schema.FORMAT_NAME:
        raise StoreError(f"{path} exists and is not an activation store; choose another --out")
    if overwrite:
        return None
    stored = root.attrs.get(schema.ATTR_CAPTURE_CONFIG)
    wanted = attrs[schema.ATTR_CAPTURE_CONFIG]
    if stored != wanted:
        differing = sorted(k for k in set(stored or {}) | set(wanted) if (stored or {}).get(k) != wanted.get(k))
        raise StoreError(
            f"{path} was captured with a different configuration ({', '.join(differing)} differ); "
            "pass --overwrite to replace it or choose another --out"
        )
    return root


def completed_shards(root: zarr.Group) -> set[int]:
    done = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][...]
    return {int(i) for i in np.flatnonzero(done)}


class ShardWriter:
    """Writes shard payloads from a bounded queue on one background thread.

    `submit` blocks when `depth` payloads are waiting (bounding memory) and re-raises any error the
    thread met. `close` drains the queue and re-raises too.
    """

    def __init__(self, root: zarr.Group, plan: StorePlan, depth: int = 2):
        self.root = root
        self.plan = plan
        self.token_arrays = [spec.name for spec in plan.arrays() if spec.has_token_axis]
        self.sharded_arrays = {spec.name for spec in plan.arrays() if spec.shards is not None}
        self.tensorstores: dict[str, Any] = {}
        self.queue: queue.Queue[ShardPayload | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.bytes_written = 0
        self.thread = threading.Thread(target=self._run, name="shard-writer", daemon=True)
        self.thread.start()

    def submit(self, payload: ShardPayload) -> None:
        self._raise_if_failed()
        while True:
            try:
                self.queue.put(payload, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self) -> None:
        if self.thread.is_alive():
            self.queue.put(None)
            self.thread.join()
        self._raise_if_failed()

    def _raise_if_failed(self) -> None:
        if self.error is None:
            return
        error = self.error
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            raise StoreError(
                f"disk full while writing {self.root.store}; completed shards are kept: free space and "
                "rerun the same command to resume"
            ) from None
        if isinstance(error, OSError):
            raise StoreError(f"cannot write to {self.root.store}: {error.strerror or error}") from None
        raise error

    def _run(self) -> None:
        while True:
            payload = self.queue.get()
            if payload is None:
                return
            if self.error is not None:
                continue  # keep draining so submit() never blocks forever
            try:
                self._write(payload)
            except BaseException as error:  # reported to the main thread
                self.error = error

    def _write(self, payload: ShardPayload) -> None:
        samples = self.plan.shard_samples(payload.shard)
        needed = token_slots_for(payload.n_tokens_max)
        current = self.root[schema.KEYS].shape[schema.ACTIVATION_DIMS[schema.KEYS].index(schema.TOKEN)]
        if needed > current:
            for name in self.token_arrays:
                array = self.root[name]
                axis = array.metadata.dimension_names.index(schema.TOKEN)
                array.resize(tuple(needed if i == axis else n for i, n in enumerate(array.shape)))
            self.tensorstores.clear()  # their cached shapes are stale
            current = needed
        pending = []
        for name, data in payload.arrays.items():
            # Skipping zarr's check of every chunk against the fill value (a second pass over all the bytes)
            # costs only the all-padding chunks, which are rare.
            array = self.root[name].with_config({"write_empty_chunks": True})
            if name in self.token_arrays:
                axis = array.metadata.dimension_names.index(schema.TOKEN)
                data = _pad_axis(data, axis, current, array.fill_value)
            handle = self._tensorstore(array) if name in self.sharded_arrays else None
            if handle is not None:
                pending.append(shard_io.write_rows(handle, samples.start, data))
            else:
                array[samples.start : samples.stop] = data
        shard_io.wait(pending)
        self.root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][payload.shard] = 1
        self.bytes_written += payload.nbytes

    def _tensorstore(self, array: zarr.Array):
        """A tensorstore handle for a sharded array of a local store (cached until the token axis grows)."""
        if array.name not in self.tensorstores:
            path = shard_io.local_array_path(array)
            self.tensorstores[array.name] = shard_io.open_array(path) if path is not None else None
        return self.tensorstores[array.name]


def _pad_axis(data: np.ndarray, axis: int, length: int, fill: Any) -> np.ndarray:
    if data.shape[axis] == length:
        return data
    shape = list(data.shape)
    shape[axis] = length
    padded = np.full(shape, fill, dtype=data.dtype)
    index = [slice(None)] * data.ndim
    index[axis] = slice(0, data.shape[axis])
    padded[tuple(index)] = data
    return padded
