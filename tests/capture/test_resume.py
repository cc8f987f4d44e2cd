"""A capture killed mid-shard (SIGKILL) resumes to exactly the store an uninterrupted run writes."""

from __future__ import annotations

import subprocess
import sys

import zarr

from store.testing import assert_stores_equal

from .conftest import REPO, capture_cli


def test_sigkill_then_resume_equals_uninterrupted(cache_home, synthetic_root, tmp_path):
    common = ["--data-root", str(synthetic_root), "--limit", "7", "--batch-size", "2", "--no-progress",
              "--ffn-dense-tokens", "last"]
    reference, resumed = tmp_path / "reference.zarr", tmp_path / "resumed.zarr"
    assert capture_cli(*common, "--out", str(reference)).returncode == 0

    root_arrays = len(list(zarr.open_group(reference, mode="r").array_keys()))
    lens_writes = len(list(zarr.open_group(reference, mode="r")["lens"].array_keys()))
    # Creation writes the layer/stream coordinates and lens arrays (down_proj once per layer); each shard
    # then writes its data arrays and one record. Kill halfway through shard 2's data arrays.
    creation = 2 + lens_writes + 1
    per_shard = root_arrays - 2 + 1
    killed = capture_cli(*common, "--out", str(resumed), kill_at_write=creation + 2 * per_shard + per_shard // 2)
    assert killed.returncode == -9, killed.stderr
    done = zarr.open_group(resumed, mode="r")["progress"]["shard_complete"][...]
    assert list(done) == [1, 1, 0, 0]
    invalid = subprocess.run([sys.executable, "-m", "store", "validate", str(resumed)], capture_output=True,
                             text=True, cwd=REPO)
    assert invalid.returncode == 1 and "incomplete" in invalid.stdout

    finished = capture_cli(*common, "--out", str(resumed))
    assert finished.returncode == 0, finished.stderr
    assert "2 shards already complete" in finished.stdout
    assert_stores_equal(reference, resumed)


def test_changed_configuration_is_refused_unless_overwrite(cache_home, synthetic_root, tmp_path):
    out = tmp_path / "store.zarr"
    common = ["--data-root", str(synthetic_root), "--limit", "2", "--no-progress", "--out", str(out)]
    assert capture_cli(*common).returncode == 0
    refused = capture_cli(*common, "--layers", "0")
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "different configuration (layers, streams differ)" in refused.stderr
    assert zarr.open_group(out, mode="r")["progress"]["shard_complete"][...].all()  # untouched
    replaced = capture_cli(*common, "--layers", "0", "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert list(zarr.open_group(out, mode="r")["layer"][...]) == [0]
