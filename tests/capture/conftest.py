"""Helpers for tests that run `python -m capture` (in this process, or in subprocesses they kill)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
from capture.__main__ import main
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
    """`python -m capture ARGS`: in this process, or a subprocess killed at write `kill_at_write`."""
    if kill_at_write is None:
        from capture.__main__ import main
        from tests.cli_runner import in_process

        return in_process(main, *args)
    command, env = capture_command(*args, kill_at_write=kill_at_write)
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
