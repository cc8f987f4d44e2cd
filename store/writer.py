"""Create, resume, fill and finalise a store. One background thread writes whole shards so compute and I/O overlap.

The sharded activation arrays of local stores are written through tensorstore (see `store.shard_io`), the rest
through zarr-python (local directories and object stores alike).

A shard's completion record (`progress/shard_complete[i] = 1`, its own object) is written only after every array
of that shard is stored, so a killed capture never leaves a half-written shard that looks complete; on resume
such a shard is simply written again, whole. Every write covers whole shards (and whole chunks of the unsharded
arrays), so an object store receives one PUT per object, never a partial update (zarr-python's sharding codec does
look a shard up first: a GET that finds nothing on a first write). Several processes
can fill one store (each owns whole shards): arrays are created at their full token capacity and never resized
while shards are written; `finalize` cuts the token axis and records the store complete once every shard is.
"""

from __future__ import annotations

import errno
import json
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from store import location, schema, shard_io
from store.layout import ArraySpec, StorePlan, token_slots_for
from store.location import Location
from store.schema import differing_fields


class StoreError(Exception):
    """A store that cannot be created, resumed or written (one clear line)."""


@dataclass(frozen=True)
class LensArray:
    """One array of the `lens/` group: its dims, data (a numpy array, or a list of per-layer arrays written one at a
    time to bound memory), logical dtype ("str" for strings) and attributes."""

    dims: tuple[str, ...]
    data: np.ndarray | list[np.ndarray]
    logical_dtype: str
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LensPayload:
    """What offline lens analyses need from the model: the `lens/` group's attributes and arrays."""

    attrs: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, LensArray] = field(default_factory=dict)


@dataclass
class ShardPayload:
    """Everything of one shard: arrays keyed by name, sample axis first, token axis padded to `n_tokens_max`.

    `pending`: steps that complete `arrays` (e.g. device-to-host copies landing), run in order on the writer's
    thread before the shard is written, so the producer can go on with the next shard meanwhile."""

    shard: int
    arrays: dict[str, np.ndarray]
    n_tokens_max: int
    nbytes: int = 0
    pending: list[Callable[[], None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nbytes = sum(a.nbytes for a in self.arrays.values() if a.dtype != object)

    def complete(self) -> None:
        """Run the pending steps (once)."""
        while self.pending:
            self.pending.pop(0)()


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


def create_store(path: Location, plan: StorePlan, attrs: dict[str, Any], lens: LensPayload) -> zarr.Group:
    """A new, empty store at `path` (a directory that must not exist, or a URL) with all arrays at their full
    token capacity, the lens group and, last, the progress records: their presence marks the store as created."""
    try:
        if not location.is_url(path):
            path.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(location.zarr_store(path), mode="w-", zarr_format=3)
        root.attrs.update(attrs)
        for spec in plan.arrays(n_token_slots=plan.token_capacity):
            _create_array(root, spec)
        for name, indices in ((schema.LAYER, plan.layers), (schema.STREAM, plan.streams)):
            coordinate = root.create_array(name, shape=(len(indices),), dtype="int32", dimension_names=(name,))
            coordinate[...] = np.asarray(indices, dtype=np.int32)
        _write_lens(root.create_group(schema.LENS_GROUP), lens)
        progress = root.create_group(schema.PROGRESS_GROUP)
        progress.create_array(
            schema.SHARD_COMPLETE, shape=(plan.n_shards,), chunks=(1,), dtype="int8", fill_value=0,
            dimension_names=(schema.SHARD,),
        )
    except location.LocationError as error:
        raise StoreError(str(error)) from None
    except OSError as error:  # PermissionError, ENOSPC, unreachable endpoints (fsspec raises OSError subclasses)
        raise StoreError(f"cannot create store at {path}: {error.strerror or error}") from None
    return root


def _write_lens(group: zarr.Group, lens: LensPayload) -> None:
    group.attrs.update(lens.attrs)
    for name, entry in lens.arrays.items():
        data, logical = entry.data, entry.logical_dtype
        parts = data if isinstance(data, list) else None
        shape = (len(parts), *parts[0].shape) if parts else data.shape
        # One layer per chunk for per-layer weights; otherwise blocks of up to 4096 along each axis.
        chunks = tuple(1 if (i == 0 and parts) else min(n, 4096) for i, n in enumerate(shape))
        spec = ArraySpec(name, entry.dims, shape, logical, chunks, None, "" if logical == "str" else 0)
        array = _create_array(group, spec)
        array.attrs.update(entry.attrs)
        if parts:
            for index, part in enumerate(parts):
                array[index] = part
        else:
            array[...] = data


def _open_existing(path: Location) -> zarr.Group | None:
    """The activation store at `path`, None if nothing is there; StoreError if something else is."""
    try:
        if not location.exists(path):
            return None
        root = zarr.open_group(location.zarr_store(path), mode="r+")
    except location.LocationError as error:
        raise StoreError(str(error)) from None
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError, json.JSONDecodeError):
        raise StoreError(f"{path} exists and is not an activation store; choose another --out") from None
    if root.attrs.get(schema.ATTR_FORMAT) != schema.FORMAT_NAME:
        raise StoreError(f"{path} exists and is not an activation store; choose another --out")
    return root


def is_created(root: zarr.Group) -> bool:
    """Whether the store's creation finished (its progress records, written last, exist)."""
    return schema.PROGRESS_GROUP in root.group_keys() and schema.SHARD_COMPLETE in root[schema.PROGRESS_GROUP].array_keys()


def _check_config(path: Location, root: zarr.Group, attrs: dict[str, Any]) -> None:
    differing = differing_fields(root.attrs.get(schema.ATTR_CAPTURE_CONFIG), attrs[schema.ATTR_CAPTURE_CONFIG])
    if differing:
        raise StoreError(
            f"{path} was captured with a different configuration ({', '.join(differing)} differ); "
            "pass --overwrite to replace it or choose another --out"
        )


def open_for_resume(path: Location, attrs: dict[str, Any], overwrite: bool) -> zarr.Group | None:
    """The existing store at `path` if its capture config equals ours; None if there is none, if its creation
    was interrupted (it holds no data yet) or if `overwrite` (the caller then recreates it).

    Raises StoreError when `path` holds something else or a different configuration.
    """
    root = _open_existing(path)
    if root is None or overwrite or not is_created(root):
        return None
    _check_config(path, root, attrs)
    return root


def wait_for_store(path: Location, attrs: dict[str, Any], timeout: float, poll: float = 1.0,
                   notify: Callable[[str], None] = print) -> zarr.Group:
    """The store at `path` once another process (rank 0) has created it, its config checked against ours.
    Raises StoreError after `timeout` seconds without it."""
    started = last_notice = time.monotonic()
    while True:
        root = _open_existing(path)
        if root is not None and is_created(root):
            _check_config(path, root, attrs)
            return root
        now = time.monotonic()
        if now - started > timeout:
            raise StoreError(f"no store appeared at {path} within {timeout:.0f} s: rank 0 creates it (is it running?)")
        if now - last_notice > 60:
            notify(f"waiting for rank 0 to create {path} ({now - started:.0f} s so far)")
            last_notice = now
        time.sleep(poll)


def completed_shards(root: zarr.Group) -> set[int]:
    done = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][...]
    return {int(i) for i in np.flatnonzero(done)}


def token_arrays(root: zarr.Group) -> list[str]:
    """Names of the root arrays that have a token axis."""
    return [name for name in root.array_keys() if schema.TOKEN in (root[name].metadata.dimension_names or ())]


def is_complete(root: zarr.Group) -> bool:
    """Whether `finalize` has recorded the store complete."""
    return schema.ATTR_CAPTURE_COMPLETE in root.attrs


def finalize(root: zarr.Group, path: Location) -> bool:
    """Once every shard is complete: cut the token axis of every array to the longest captured sample, then record
    the store complete (the last write). Returns whether the store is complete. Idempotent, so two ranks finishing
    together both write the same metadata.

    The cut edits each array's `zarr.json` (the Zarr v3 metadata document) rather than calling zarr's resize: nothing
    was written beyond the cut, and zarr's resize tries to delete every chunk key outside the new shape, which took
    290 s for 25 arrays of 1,000 samples x 32,768 token slots here."""
    if is_complete(root):
        return True
    done = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][...]
    if not done.all():
        return False
    slots = token_slots_for(int(root[schema.N_TOKENS][...].max(initial=0)))
    for name in token_arrays(root):
        array = root[name]
        axis = array.metadata.dimension_names.index(schema.TOKEN)
        if array.shape[axis] != slots:
            key = f"{name}/zarr.json"
            metadata = location.read_json(path, key)
            metadata["shape"][axis] = slots
            location.replace_json(path, key, metadata)
    root.attrs[schema.ATTR_CAPTURE_COMPLETE] = {
        schema.ATTR_FINISHED: datetime.now(UTC).isoformat(timespec="seconds"),
        schema.ATTR_TOKEN_SLOTS: slots,
    }
    return True


class ShardWriter:
    """Writes shard payloads from a bounded queue on `workers` background threads (several shards in flight keep
    the disk busy while one waits for its device copies or its slowest array).

    `submit` blocks when `depth` payloads are waiting, so at most `depth + workers` payloads are held (bounding
    memory), and re-raises any error a thread met. `close` drains the queue and re-raises too.
    """

    def __init__(self, root: zarr.Group, plan: StorePlan, depth: int = 2, workers: int = 2):
        self.root = root
        self.plan = plan
        # Arrays keep their shape while shards are written (created at full token capacity), so each is opened once
        # here rather than per shard (on an object store every opening is a metadata GET). Skipping zarr's check of
        # every chunk against the fill value (a second pass over all the bytes) costs only the all-padding chunks,
        # which are rare.
        self.arrays = {spec.name: root[spec.name].with_config({"write_empty_chunks": True}) for spec in plan.arrays()}
        self.token_axes = {spec.name: spec.dims.index(schema.TOKEN) for spec in plan.arrays() if spec.has_token_axis}
        self.capacity = self.arrays[schema.TOKEN_ID].shape[self.token_axes[schema.TOKEN_ID]]
        # Sharded arrays of local stores are written through tensorstore (store.shard_io); the rest through zarr.
        self.tensorstores = {spec.name: shard_io.open_array(path) for spec in plan.arrays() if spec.shards is not None
                             and (path := shard_io.local_array_path(self.arrays[spec.name])) is not None}
        self.records = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE]
        self.queue: queue.Queue[ShardPayload | None] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.unrecorded: list[int] = []  # shards whose data is written but whose completion record failed
        self.bytes_written = 0
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"shard-writer-{i}", daemon=True)
                        for i in range(workers)]
        for thread in self.threads:
            thread.start()

    def submit(self, payload: ShardPayload) -> None:
        self._raise_if_failed()
        while True:
            try:
                self.queue.put(payload, timeout=0.5)
                return
            except queue.Full:
                self._raise_if_failed()

    def close(self) -> None:
        alive = [thread for thread in self.threads if thread.is_alive()]
        for _ in alive:
            self.queue.put(None)
        for thread in alive:
            thread.join()
        self._record_written_shards()
        self._raise_if_failed()

    def _record_written_shards(self) -> None:
        """Record the shards whose data was written whole but whose record failed: with shards in flight together,
        a disk filled by another shard can refuse the record write, and that shard's failed write frees its space
        again (a shard is written to a temporary file, then renamed). A record that still fails stays unwritten,
        and the shard is captured again on resume."""
        for shard in sorted(self.unrecorded):
            try:
                self.records[shard] = 1
            except OSError:
                return

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
                payload.complete()
                self._write(payload)
            except BaseException as error:  # reported to the main thread
                with self.lock:
                    self.error = self.error or error

    def _write(self, payload: ShardPayload) -> None:
        samples = self.plan.shard_samples(payload.shard)
        slots = token_slots_for(payload.n_tokens_max)
        if slots > self.capacity:
            raise StoreError(f"shard {payload.shard} holds a sample of {payload.n_tokens_max} stored tokens, more than "
                             f"the store's capacity of {self.capacity}: capture fewer tokens (--tokens)")
        pending = []
        for name, data in payload.arrays.items():
            array = self.arrays[name]
            region: tuple[slice, ...] = (slice(samples.start, samples.stop),)
            if name in self.token_axes:
                axis = self.token_axes[name]
                data = _pad_axis(data, axis, slots, array.fill_value)  # whole token blocks: whole shards
                region += (slice(None),) * (axis - 1) + (slice(0, slots),)
            if name in self.tensorstores:
                pending.append(shard_io.write_region(self.tensorstores[name], region, data))
            else:
                array[region] = data
        shard_io.wait(pending)
        try:
            self.records[payload.shard] = 1
        except OSError:
            with self.lock:
                self.unrecorded.append(payload.shard)
            raise
        with self.lock:
            self.bytes_written += payload.nbytes


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
