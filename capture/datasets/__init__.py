"""Dataset adapters: each turns `--dataset/--data-root/--split/--limit` into an ordered list of records."""

from __future__ import annotations

from pathlib import Path

from capture.datasets.base import Dataset, ImageLoadError, Record, load_image
from capture.datasets.coco import open_coco
from capture.datasets.folder import open_folder
from capture.datasets.manifest import open_manifest
from capture.datasets.samples import SAMPLE_UNITS, expand_samples, record_fields
from capture.datasets.synthetic_coco import open_synthetic_coco
from capture.datasets.synthetic_correspondence import open_synthetic_correspondence
from capture.errors import CaptureError

DATASETS = ("coco", "folder", "manifest", "synthetic-coco", "synthetic-correspondence")


def open_dataset(name: str, data_root: Path | None, split: str | None, limit: int | None) -> Dataset:
    """The records of dataset `name`; CaptureError for unknown names or missing roots."""
    if limit is not None and limit < 1:
        raise CaptureError(f"--limit must be at least 1, got {limit}")
    if name == "synthetic-coco":
        return open_synthetic_coco(data_root, split, limit)
    if name == "synthetic-correspondence":
        return open_synthetic_correspondence(data_root, limit)
    if data_root is None:
        raise CaptureError(f"--dataset {name} needs --data-root")
    if name == "coco":
        return open_coco(data_root, split or "val2017", limit)
    if name == "folder":
        return open_folder(data_root, limit)
    if name == "manifest":
        return open_manifest(data_root, limit)
    raise CaptureError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")


__all__ = ["DATASETS", "SAMPLE_UNITS", "Dataset", "ImageLoadError", "Record", "expand_samples", "load_image", "open_dataset",
           "record_fields"]
