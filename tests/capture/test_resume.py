"""A capture killed mid-shard (SIGKILL) resumes to exactly the store an uninterrupted run writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr

REPO = Path(__file__).resolve().parents[2]

# Dies with SIGKILL in the middle of shard 2: after some of its arrays are written, before its record.
KILLING_RUNNER = """
import os, signal, sys
import zarr
from store import shard_io
writes = 0
def counting(original):
    def write(*args):
        global writes
        writes += 1
        if writes == int(os.environ["KILL_AT_WRITE"]):
            os.kill(os.getpid(), signal.SIGKILL)
        return original(*args)
    return write
zarr.Array.__setitem__ = counting(zarr.Array.__setitem__)  # metadata, small arrays, records
shard_io.write_rows = counting(shard_io.write_rows)  # activation arrays
from capture.cli import main
sys.exit(main(sys.argv[1:]))
"""


def capture_cli(*args: str, kill_at_write: int | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if kill_at_write is None:
        command = [sys.executable, "-m", "capture", *args]
    else:
        env["KILL_AT_WRITE"] = str(kill_at_write)
        command = [sys.executable, "-c", KILLING_RUNNER, *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(path, mode="r")
    found = {}
    for group_path, group in [("", root), ("lens/", root["lens"]), ("progress/", root["progress"])]:
        for name in group.array_keys():
            found[group_path + name] = group[name][...]
    return found


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
    expected, actual = arrays_of(reference), arrays_of(resumed)
    assert expected.keys() == actual.keys()
    for name in expected:
        assert np.array_equal(expected[name], actual[name], equal_nan=expected[name].dtype.kind == "f"), name


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
