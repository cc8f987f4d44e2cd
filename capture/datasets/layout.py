"""What the readers of distributed data sets share: a missing file or folder, or one that is not what its format
says, becomes one CaptureError line naming the path (and, for JSON lines, the line); `--split` and `--subset`
checks; list files and label masks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from capture.errors import CaptureError
from store.masks import read_label_mask


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


def select_subsets(requested: str | None, names: Sequence[str], dataset: str,
                   groups: Mapping[str, Sequence[str]] | None = None) -> list[str]:
    """The subsets `requested` names, in the order of `names`; all of `names` when None.

    `requested` is a comma-separated list of names or group names (`groups` maps a group such as "perception" to
    its names), matched without regard to case. An unknown name is refused with the list of known ones.
    """
    if requested is None:
        return list(names)
    groups = groups or {}
    by_key = {name.lower(): [name] for name in names} | {group.lower(): list(members) for group, members in groups.items()}
    chosen: set[str] = set()
    for item in (part.strip() for part in requested.split(",")):
        if item.lower() not in by_key:
            known = ", ".join([*names, *groups])
            raise CaptureError(f"unknown --subset {item!r} for --dataset {dataset} (choose from {known})")
        chosen.update(by_key[item.lower()])
    return [name for name in names if name in chosen]


def refuse_split(split: str | None, dataset: str) -> None:
    """For data sets without splits: a given --split is an error rather than silently ignored."""
    if split is not None:
        raise CaptureError(f"{dataset} has no splits (got --split {split!r})")


def choose(subset: str | None, available: Iterable[str], dataset: str) -> list[str] | None:
    """`select_subsets` of the distinct `available` names; None when no subset was asked for (read everything)."""
    if subset is None:
        return None
    return select_subsets(subset, list(dict.fromkeys(available)), dataset)


def read_list(path: Path) -> list[str]:
    """The non-empty lines of a list file (ImageSets/*.txt), stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_mask(path: Path, dataset: str) -> np.ndarray:
    """`store.masks.read_label_mask(path)`, an unreadable file refused with one line naming it."""
    try:
        return read_label_mask(path)
    except (OSError, ValueError) as error:
        raise CaptureError(f"{dataset}: unreadable mask {path} ({error})") from None
