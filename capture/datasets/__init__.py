"""Dataset readers, found through one registry: `--dataset NAME` opens `DATASETS[NAME]`.

A reader turns `--data-root/--split/--limit` into an ordered list of records whose annotations follow
`store.annotation`. To add a data set, write a module with an `open_*` function and register it below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from capture.datasets.base import Dataset, ImageLoadError, Record, load_image
from capture.datasets.coco import open_coco
from capture.datasets.folder import open_folder
from capture.datasets.manifest import open_manifest
from capture.datasets.photos import SUBSETS as PHOTO_SUBSETS
from capture.datasets.photos import open_photos
from capture.datasets.samples import SAMPLE_UNITS, expand_samples, record_fields
from capture.datasets.synthetic_coco import open_synthetic_coco
from capture.datasets.synthetic_correspondence import open_synthetic_correspondence
from capture.errors import CaptureError


@dataclass(frozen=True)
class DatasetReader:
    """How to open one data set: `open(root, split, limit)`, or `open(root, split, limit, subset)` for readers with
    named subsets (`subset_help` says what `--subset` selects); `needs_root`: refused without --data-root."""

    name: str
    open: Callable[..., Dataset]
    needs_root: bool
    description: str
    subset_help: str | None = None


DATASETS: dict[str, DatasetReader] = {reader.name: reader for reader in (
    DatasetReader("coco", lambda root, split, limit: open_coco(root, split or "val2017", limit), True,
                  "COCO layout: annotations/{instances,captions}_<split>.json and <split>/ under --data-root"),
    DatasetReader("folder", lambda root, split, limit: open_folder(root, limit), True,
                  "every image file under --data-root"),
    DatasetReader("manifest", lambda root, split, limit: open_manifest(root, limit), True,
                  "a JSONL manifest (--data-root FILE.jsonl or a folder holding manifest.jsonl)"),
    DatasetReader("synthetic-coco", open_synthetic_coco, False,
                  "generated COCO-format shapes (generated into the cache, or into --data-root)"),
    DatasetReader("synthetic-correspondence", lambda root, split, limit: open_synthetic_correspondence(root, limit),
                  False, "generated keypoint pairs, choice trials and videos with masks"),
    DatasetReader("photos", open_photos, False,
                  "real photographs shipped in packages, hand-written captions; the quokka's box, keypoints and mask; "
                  "stereo and transformed-quokka keypoint pairs (copied into the cache, or into --data-root)",
                  subset_help=f"{' or '.join(PHOTO_SUBSETS)}: single photos, or the 2-image keypoint pairs"),
)}


def open_dataset(name: str, data_root: Path | None, split: str | None, limit: int | None,
                 subset: str | None = None) -> Dataset:
    """The records of dataset `name`; CaptureError for unknown names, missing roots or a subset the reader has not."""
    if limit is not None and limit < 1:
        raise CaptureError(f"--limit must be at least 1, got {limit}")
    if name not in DATASETS:
        raise CaptureError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    reader = DATASETS[name]
    if reader.needs_root and data_root is None:
        raise CaptureError(f"--dataset {name} needs --data-root")
    if subset is None:
        return reader.open(data_root, split, limit)
    if reader.subset_help is None:
        raise CaptureError(f"--dataset {name} has no subsets (--subset {subset!r})")
    return reader.open(data_root, split, limit, subset)


__all__ = ["DATASETS", "SAMPLE_UNITS", "Dataset", "DatasetReader", "ImageLoadError", "Record", "expand_samples",
           "load_image", "open_dataset", "record_fields"]
