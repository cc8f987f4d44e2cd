"""Helpers for tests that run `python -m capture` in subprocesses (and kill them)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import zarr

REPO = Path(__file__).resolve().parents[2]

# `python -m capture` that dies with SIGKILL at its KILL_AT_WRITE-th array write (a zarr or tensorstore write).
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
shard_io.write_region = counting(shard_io.write_region)  # activation arrays
from capture.cli import main
sys.exit(main(sys.argv[1:]))
"""


def capture_command(*args: str, kill_at_write: int | None = None) -> tuple[list[str], dict[str, str]]:
    """Command line and environment of `python -m capture ARGS`, killed by SIGKILL at write `kill_at_write`."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    if kill_at_write is None:
        return [sys.executable, "-m", "capture", *args], env
    env["KILL_AT_WRITE"] = str(kill_at_write)
    return [sys.executable, "-c", KILLING_RUNNER, *args], env


def capture_cli(*args: str, kill_at_write: int | None = None) -> subprocess.CompletedProcess:
    command, env = capture_command(*args, kill_at_write=kill_at_write)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)


def arrays_of(path: Path) -> dict[str, np.ndarray]:
    root = zarr.open_group(path, mode="r")
    found = {}
    for group_path, group in [("", root), ("lens/", root["lens"]), ("progress/", root["progress"])]:
        for name in group.array_keys():
            found[group_path + name] = group[name][...]
    return found


def assert_same_store(expected: Path | str, actual: Path | str) -> None:
    """Bit-identical arrays (lens and progress records included) and the same capture configuration."""
    want, got = arrays_of(expected), arrays_of(actual)
    assert want.keys() == got.keys()
    for name in want:
        assert np.array_equal(want[name], got[name], equal_nan=want[name].dtype.kind == "f"), name
    want_root, got_root = zarr.open_group(expected, mode="r"), zarr.open_group(actual, mode="r")
    assert want_root.attrs["capture_config"] == got_root.attrs["capture_config"]
    assert ("capture_complete" in want_root.attrs) == ("capture_complete" in got_root.attrs)
