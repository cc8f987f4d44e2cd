"""Several capture processes share one store: each rank writes whole shards, the last one completes the store,
and a killed rank resumes alone. The result is bit-identical to a single-process capture."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import zarr

from capture.errors import CaptureError
from capture.options import CaptureOptions
from capture.run import run_capture
from store.layout import StorePlan
from store.testing import assert_stores_equal

from .conftest import REPO, capture_cli, capture_command

N_SAMPLES, BATCH = 7, 2  # 4 shards: rank 0 writes 0 and 2, rank 1 writes 1 and 3 (a partial shard)


@pytest.fixture(scope="module")
def common(synthetic_root) -> list[str]:
    return ["--data-root", str(synthetic_root), "--limit", str(N_SAMPLES), "--batch-size", str(BATCH),
            "--no-progress", "--ffn-dense-tokens", "last"]


@pytest.fixture(scope="module")
def reference(cache_home, common, tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "reference.zarr"
    single = capture_cli(*common, "--out", str(out))
    assert single.returncode == 0, single.stderr
    return out


def test_shards_are_dealt_round_robin():
    plan = StorePlan(n_samples=N_SAMPLES, batch_size=BATCH, max_images=1, layers=(0,), streams=(0,), n_kv_heads=1,
                     head_dim=2, d_model=2, ffn_units=4, ffn_topk=2, compute_dtype="float32", keys_prerope=False,
                     ffn_dense=False)
    assert plan.shards_of(0, 2) == [0, 2] and plan.shards_of(1, 2) == [1, 3]
    assert sorted(plan.shards_of(0, 3) + plan.shards_of(1, 3) + plan.shards_of(2, 3)) == [0, 1, 2, 3]


def test_torchrun_with_two_processes_equals_one_process(reference, common, tmp_path):
    out = tmp_path / "torchrun.zarr"
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "capture", *common, "--out", str(out)],
        capture_output=True, text=True, cwd=REPO, timeout=300, env=capture_command()[1],
    )
    assert launched.returncode == 0, launched.stderr
    assert "rank:     0 of 2: wrote 2 shards" in launched.stdout and "rank:     1 of 2: wrote 2 shards" in launched.stdout
    assert "the store is complete" in launched.stdout  # whichever finished last
    assert_stores_equal(reference, out)


def test_a_killed_rank_resumes_alone(reference, common, tmp_path):
    out = tmp_path / "ranks.zarr"
    rank0 = capture_cli(*common, "--out", str(out), "--rank", "0", "--world-size", "2")
    assert rank0.returncode == 0, rank0.stderr
    assert "2 shards still pending on other ranks" in rank0.stdout
    root = zarr.open_group(out, mode="r")
    assert list(root["progress"]["shard_complete"][...]) == [1, 0, 1, 0] and "capture_complete" not in root.attrs
    assert root["kind"].shape[1] > 256  # the full token capacity until the store is complete

    # Rank 1 dies by SIGKILL in the middle of its first shard: some arrays written, no completion record.
    per_shard = len(list(root.array_keys())) - 2 + 1  # data arrays (not the layer / stream coordinates) + record
    killed = capture_cli(*common, "--out", str(out), "--rank", "1", "--world-size", "2", kill_at_write=per_shard // 2)
    assert killed.returncode == -9, killed.stderr
    assert list(zarr.open_group(out, mode="r")["progress"]["shard_complete"][...]) == [1, 0, 1, 0]
    invalid = subprocess.run([sys.executable, "-m", "store", "validate", str(out)], capture_output=True, text=True, cwd=REPO)
    assert invalid.returncode == 1 and "incomplete: 2 of 4 shards" in invalid.stdout

    resumed = capture_cli(*common, "--out", str(out), "--rank", "1", "--world-size", "2")
    assert resumed.returncode == 0, resumed.stderr
    assert "wrote 2 shards; the store is complete" in resumed.stdout
    assert_stores_equal(reference, out)


def test_rank_options_are_checked(cache_home, synthetic_root, tmp_path):
    base = {"data_root": synthetic_root, "limit": 2, "progress": False, "out": tmp_path / "s.zarr"}
    with pytest.raises(CaptureError, match="--rank must be in 0..1"):
        run_capture(CaptureOptions(**base, rank=2, world_size=2))
    with pytest.raises(CaptureError, match="--overwrite with several ranks"):
        run_capture(CaptureOptions(**base, rank=0, world_size=2, overwrite=True))
    with pytest.raises(CaptureError, match="no store appeared .* within 0 s: rank 0 creates it"):
        run_capture(CaptureOptions(**base, rank=1, world_size=2, wait_for_store=0))
    assert not (tmp_path / "s.zarr").exists()


def test_an_interrupted_creation_is_redone(cache_home, synthetic_root, tmp_path):
    """A store without progress records holds no shard yet: rank 0 creates it again instead of failing."""
    out = tmp_path / "s.zarr"
    options = CaptureOptions(data_root=synthetic_root, limit=2, progress=False, out=out)
    run_capture(options)
    shutil.rmtree(out / "progress")  # as if killed before creation's last write
    summary = run_capture(options)
    assert summary.resumed_shards == 0 and summary.captured == 2
    assert zarr.open_group(out, mode="r").attrs["capture_complete"]["token_slots"] == 256
