"""The background writer reports a full disk as one clear error and never marks the shard complete."""

from __future__ import annotations

import errno
import shutil
import subprocess

import numpy as np
import pytest
import zarr

from store import schema
from store.layout import StorePlan
from store.writer import LensPayload, ShardPayload, ShardWriter, StoreError, completed_shards, create_store

PLAN = StorePlan(n_samples=4, batch_size=2, max_images=1, layers=(0,), streams=(0,), n_kv_heads=1, head_dim=2,
                 d_model=2, ffn_units=4, ffn_topk=2, compute_dtype="float32", keys_prerope=False, ffn_dense=False)
LENS = LensPayload({schema.ATTR_NORM_EPS: 1e-6})


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    root = create_store(tmp_path / "s.zarr", PLAN, {schema.ATTR_FORMAT: schema.FORMAT_NAME}, LENS)

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    writer = ShardWriter(root, PLAN)
    writer.submit(ShardPayload(0, {"hidden": np.ones((2, 1, 3, 2), np.float32)}, n_tokens_max=3))
    with pytest.raises(StoreError, match="disk full .* rerun the same command to resume"):
        writer.close()
    monkeypatch.undo()
    assert completed_shards(root) == set()


@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs (needs mount rights; skipped where there are none)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


@pytest.mark.parametrize("workers", [1, 2])
def test_a_really_full_disk_keeps_completed_shards(small_disk, workers):
    """Shard 0 fits, shard 1 does not: a clear error; written one at a time, shard 0 is complete and readable.
    With two shards in flight either may take the space first: every shard recorded complete holds its data."""
    plan = StorePlan(n_samples=4, batch_size=2, max_images=1, layers=(0,), streams=(0,), n_kv_heads=1, head_dim=2,
                     d_model=384, ffn_units=4, ffn_topk=2, compute_dtype="float32", keys_prerope=False,
                     ffn_dense=False, compression="none")
    root = create_store(small_disk / "s.zarr", plan, {schema.ATTR_FORMAT: schema.FORMAT_NAME}, LENS)
    hidden = np.random.default_rng(0).standard_normal((2, 1, 256, 384), dtype=np.float32)  # 768 KiB a shard
    writer = ShardWriter(root, plan, workers=workers)
    writer.submit(ShardPayload(0, {"hidden": hidden[:, :, :32]}, n_tokens_max=32))
    writer.submit(ShardPayload(1, {"hidden": hidden}, n_tokens_max=256))
    with pytest.raises(StoreError, match="disk full .* rerun the same command to resume"):
        writer.close()
    completed = completed_shards(root)
    assert completed == {0} if workers == 1 else len(completed) < 2
    stored = zarr.open_group(small_disk / "s.zarr", mode="r")["hidden"]
    if 0 in completed:
        assert np.array_equal(stored[:2, :, :32], hidden[:, :, :32])
    if 1 in completed:
        assert np.array_equal(stored[2:, :, :256], hidden)


def test_a_shard_whose_record_was_refused_is_recorded_at_close(tmp_path, monkeypatch):
    """Data written whole, record refused (another shard in flight filled the disk): recorded again at close."""
    root = create_store(tmp_path / "s.zarr", PLAN, {schema.ATTR_FORMAT: schema.FORMAT_NAME}, LENS)
    writer = ShardWriter(root, PLAN, workers=1)
    original, refused = type(writer.records).__setitem__, []

    def refuse_once(self, key, value):
        if self.path.endswith(schema.SHARD_COMPLETE) and not refused:
            refused.append(key)
            raise OSError(errno.ENOSPC, "No space left on device")
        return original(self, key, value)

    monkeypatch.setattr(type(writer.records), "__setitem__", refuse_once)
    writer.submit(ShardPayload(0, {"hidden": np.ones((2, 1, 3, 2), np.float32)}, n_tokens_max=3))
    with pytest.raises(StoreError, match="disk full"):
        writer.close()
    monkeypatch.undo()
    assert refused == [0] and completed_shards(root) == {0}
    assert (zarr.open_group(tmp_path / "s.zarr", mode="r")["hidden"][:2, :, :3] == 1).all()
