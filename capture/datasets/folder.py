"""`folder`: every image file under a directory (recursively, sorted by relative path)."""

from __future__ import annotations

from pathlib import Path

from capture.datasets.base import IMAGE_SUFFIXES, Dataset, Record
from capture.errors import CaptureError


def open_folder(root: Path, limit: int | None = None) -> Dataset:
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} is not a directory")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise CaptureError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    records = [
        Record(str(p.relative_to(root)), (p,), {"file_name": str(p.relative_to(root))}) for p in paths[:limit]
    ]
    return Dataset("folder", root, None, records)
