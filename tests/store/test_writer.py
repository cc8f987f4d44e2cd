"""The background writer reports a full disk as one clear error and never marks the shard complete."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import zarr

from store.layout import StorePlan
from store.writer import ShardPayload, ShardWriter, StoreError, completed_shards, create_store

PLAN = StorePlan(n_samples=4, batch_size=2, max_images=1, layers=(0,), streams=(0,), n_kv_heads=1, head_dim=2,
                 d_model=2, ffn_units=4, ffn_topk=2, compute_dtype="float32", keys_prerope=False, ffn_dense=False)
LENS = {"attrs": {"eps": 1e-6}, "arrays": {}}


def test_disk_full_is_a_clear_error(tmp_path, monkeypatch):
    root = create_store(tmp_path / "s.zarr", PLAN, {"format": "vlm-activation-store"}, LENS)

    def full(self, key, value):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(zarr.Array, "__setitem__", full)
    writer = ShardWriter(root, PLAN)
    writer.submit(ShardPayload(0, {"hidden": np.ones((2, 1, 3, 2), np.float32)}, n_tokens_max=3))
    with pytest.raises(StoreError, match="disk full .* rerun the same command to resume"):
        writer.close()
    monkeypatch.undo()
    assert completed_shards(root) == set()
