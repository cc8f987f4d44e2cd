"""Reading a data set's own files: a missing file or folder, or one that is not what its format says, becomes one
CaptureError line naming the path (and, for JSON lines, the line)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from capture.errors import CaptureError


def require_file(path: Path, dataset: str, what: str) -> Path:
    """`path`, or CaptureError "<dataset> <what> <path> not found"."""
    if not path.is_file():
        raise CaptureError(f"{dataset} {what} {path} not found")
    return path


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """`path`, or CaptureError "<dataset> <what> <path>/ not found"."""
    if not path.is_dir():
        raise CaptureError(f"{dataset} {what} {path}/ not found")
    return path


def read_json(path: Path, dataset: str) -> Any:
    """The JSON document at `path`; CaptureError naming the file if it is not valid JSON."""
    try:
        with path.open(encoding="utf-8") as stream:
            return json.load(stream)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CaptureError(f"{dataset}: {path} is not valid JSON ({error})") from None


def read_json_lines(path: Path, dataset: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file; CaptureError naming file and line."""
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise CaptureError(f"{dataset}: {path}:{number} is not valid JSON ({error.msg})") from None
            if not isinstance(entry, dict):
                raise CaptureError(f"{dataset}: {path}:{number} is not a JSON object")
            yield number, entry


def field(entry: dict[str, Any], key: str, where: str, dataset: str) -> Any:
    """`entry[key]`, or CaptureError "<dataset>: <where> has no '<key>'"."""
    if key not in entry or entry[key] is None:
        raise CaptureError(f"{dataset}: {where} has no {key!r}")
    return entry[key]
