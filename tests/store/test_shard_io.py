"""Activation shards written through tensorstore read back through zarr-python bit for bit, errors keep their errno."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import zarr

from store import shard_io


def sharded_array(path, compressors=None) -> zarr.Array:
    return zarr.create_array(store=zarr.storage.LocalStore(path), shape=(5, 3, 512, 8), chunks=(2, 1, 128, 8),
                             shards=(2, 3, 256, 8), dtype="uint16", fill_value=0, compressors=compressors,
                             dimension_names=("sample", "layer", "token", "d"))


@pytest.mark.parametrize("compressors", [None, zarr.codecs.ZstdCodec(level=1)], ids=["none", "zstd"])
def test_rows_written_by_tensorstore_read_back_through_zarr(tmp_path, compressors):
    array = sharded_array(tmp_path / "a.zarr", compressors)
    data = np.random.default_rng(0).integers(1, 65535, size=array.shape, dtype=np.uint16)
    handle = shard_io.open_array(shard_io.local_array_path(array))
    # Whole shards (rows 0-1, 2-3) and the last, partial one (row 4), each with all-zero chunks that are stored.
    data[2:4, :, 256:] = 0
    shard_io.wait([shard_io.write_region(handle, (slice(start, min(start + 2, 5)),), data[start:start + 2]) for start in (0, 2, 4)])
    assert np.array_equal(zarr.open_array(tmp_path / "a.zarr", mode="r")[...], data)


def test_non_local_store_has_no_path():
    assert shard_io.local_array_path(zarr.create_array(store={}, shape=(2,), dtype="int8")) is None


def test_os_errors_keep_their_errno(tmp_path):
    array = sharded_array(tmp_path / "a.zarr")
    handle = shard_io.open_array(shard_io.local_array_path(array))
    (tmp_path / "a.zarr" / "c").mkdir()
    (tmp_path / "a.zarr" / "c" / "0").write_text("a file where the shard's directory should be")
    with pytest.raises(OSError) as raised:
        shard_io.wait([shard_io.write_region(handle, (slice(0, 2),), np.ones((2, 3, 512, 8), np.uint16))])
    assert raised.value.errno in (errno.ENOTDIR, errno.EEXIST)


def test_other_failures_stay_value_errors(tmp_path):
    array = sharded_array(tmp_path / "a.zarr")
    handle = shard_io.open_array(shard_io.local_array_path(array))
    with pytest.raises((ValueError, IndexError)):
        shard_io.wait([shard_io.write_region(handle, (slice(4, 6),), np.ones((2, 3, 512, 8), np.uint16))])  # past the last row


def test_open_of_a_missing_array_fails(tmp_path):
    with pytest.raises(ValueError, match="NOT_FOUND"):
        shard_io.open_array(tmp_path / "missing.zarr")
