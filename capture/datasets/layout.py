"""Checks shared by the readers of distributed data sets: the folders and files a layout needs, the split asked
for, and `--subset` names, each refused with one line that says what was expected where."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from capture.errors import CaptureError
from store.masks import read_label_mask


def require_dir(path: Path, dataset: str, what: str) -> Path:
    """`path` if it is a directory; else CaptureError naming it (`what`: what the folder should hold)."""
    if not path.is_dir():
        raise CaptureError(f"{dataset}: expected {what} at {path}")
    return path


def require_file(path: Path, dataset: str, what: str) -> Path:
    """`path` if it is a file; else CaptureError naming it."""
    if not path.is_file():
        raise CaptureError(f"{dataset}: expected {what} at {path}")
    return path


def refuse_split(split: str | None, dataset: str) -> None:
    """For data sets without splits: a given --split is an error rather than silently ignored."""
    if split is not None:
        raise CaptureError(f"{dataset} has no splits (got --split {split!r})")


def choose(subset: str | None, available: Iterable[str], dataset: str, what: str) -> list[str] | None:
    """The names of a comma-separated `--subset` (in the order given), checked against `available`; None when
    no subset was asked for."""
    if subset is None:
        return None
    names = [name.strip() for name in subset.split(",") if name.strip()]
    known = sorted(set(available))
    unknown = [name for name in names if name not in known]
    if not names or unknown:
        raise CaptureError(f"{dataset}: unknown {what} {', '.join(unknown) or repr(subset)} "
                           f"(choose from {', '.join(known)})")
    return names


def read_list(path: Path) -> list[str]:
    """The non-empty lines of a list file (ImageSets/*.txt), stripped."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def read_mask(path: Path, dataset: str) -> np.ndarray:
    """`store.masks.read_label_mask(path)`, an unreadable file refused with one line naming it."""
    try:
        return read_label_mask(path)
    except (OSError, ValueError) as error:
        raise CaptureError(f"{dataset}: unreadable mask {path} ({error})") from None
