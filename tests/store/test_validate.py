"""`python -m store validate` accepts a complete store and names what is wrong with a broken one."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import zarr

from store.__main__ import main
from store.validate import validate
from tests.cli_runner import in_process

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess:
    return in_process(main, *args)


def test_complete_store_is_valid(captured_store):
    assert validate(captured_store) == []
    result = _cli("validate", str(captured_store))
    assert result.returncode == 0 and "valid" in result.stdout
    info = _cli("info", str(captured_store))
    assert info.returncode == 0 and "6 captured, 0 skipped" in info.stdout and "lens/" in info.stdout


def test_problems_are_reported(captured_store, tmp_path):
    broken = tmp_path / "broken.zarr"
    shutil.copytree(captured_store, broken)
    root = zarr.open_group(broken, mode="r+")
    root["progress"]["shard_complete"][1] = 0
    root["kind"][0, 0] = -1  # a PAD inside the sample's tokens
    del root["keys"].attrs["logical_dtype"]
    problems = validate(broken)
    assert any("incomplete: 1 of 3 shards" in p for p in problems)
    assert any("sample 0: token kinds disagree" in p for p in problems)
    assert any("keys: missing logical_dtype" in p for p in problems)
    assert _cli("validate", str(broken)).returncode == 1


def test_not_a_store(tmp_path):
    result = _cli("validate", str(tmp_path / "nothing.zarr"))
    assert result.returncode == 2 and "does not exist" in result.stderr
    (tmp_path / "plain").mkdir()
    assert _cli("info", str(tmp_path / "plain")).returncode == 2
