"""`msrc`: the MSRC object co-segmentation subset (14 classes of MSRC v2), one record per image.

The co-segmentation literature distributes it as a folder per class holding the images and binary ground-truth
masks (object non-zero, background black). Two layouts are read, found by what is under --data-root:

    <class>/<image>.bmp|.jpg  +  <class>/GroundTruth/<image>.png   (the Object Discovery download of
                                                                    Rubinstein et al. 2013)
    Images/<class>/<image>    +  GroundTruth/<class>/<image>.png   (the co-saliency benchmarks' copy)

A mask has its image's file stem; any image suffix is accepted. Records: annotation `category` and `categories`
([class]: the co-segmentation set the image belongs to), `masks` (the ground-truth file) and `mask_labels`
naming its non-zero values as the class, so every non-black pixel is foreground (the loaders threshold at > 0
too), `image_id` (the file stem), `file_name`. The masks are read once here, cheaply, to find those values.
`--subset` classes, comma-separated; there are no splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from capture.datasets.base import IMAGE_SUFFIXES, Dataset, Record
from capture.datasets.layout import choose, read_mask, refuse_split
from capture.errors import CaptureError
from store import annotation as contract

NAME = "msrc"
GROUND_TRUTH = "GroundTruth"
IMAGE_FOLDERS = ("Images", "Image", "images", "image")


def class_folders(root: Path) -> dict[str, tuple[Path, Path]]:
    """{class: (image folder, mask folder)} in either layout; CaptureError naming both when neither is there."""
    if not root.is_dir():
        raise CaptureError(f"{NAME}: --data-root {root} is not a folder")
    shared = next((root / name for name in IMAGE_FOLDERS if (root / name).is_dir()), None)
    if shared is not None and (root / GROUND_TRUTH).is_dir():
        return {d.name: (d, root / GROUND_TRUTH / d.name) for d in sorted(shared.iterdir()) if d.is_dir()}
    found = {d.name: (d, d / GROUND_TRUTH) for d in sorted(root.iterdir()) if (d / GROUND_TRUTH).is_dir()}
    if not found:
        raise CaptureError(f"{NAME}: expected class folders with masks under {root}: <class>/{GROUND_TRUTH}/ beside "
                           f"<class>/'s images, or Images/<class>/ and {GROUND_TRUTH}/<class>/")
    return found


def open_msrc(root: Path, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """One record per image of each class folder (classes sorted, images sorted); `subset`: classes."""
    refuse_split(split, NAME)
    folders = class_folders(root)
    wanted = choose(subset, folders, NAME)
    records: list[Record] = []
    for label in wanted or list(folders):
        image_dir, mask_dir = folders[label]
        for image in sorted(p for p in image_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES):
            if limit is not None and len(records) >= limit:
                return Dataset(NAME, root, None, records)
            mask = _mask_of(image, mask_dir)
            foreground = [int(i) for i in np.unique(read_mask(mask, NAME)) if i != 0] or [1]  # [1]: an empty mask
            annotation = {
                contract.CATEGORY: label,
                contract.CATEGORIES: [label],
                contract.IMAGE_ID: image.stem,
                contract.FILE_NAME: str(image.relative_to(root)),
                contract.MASKS: str(mask.resolve()),
                contract.MASK_LABELS: {str(i): label for i in foreground},
            }
            records.append(Record(f"{label}/{image.stem}", (image,), annotation))
    if not records:
        raise CaptureError(f"{NAME}: no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders under {root}")
    return Dataset(NAME, root, None, records)


def _mask_of(image: Path, mask_dir: Path) -> Path:
    for suffix in (".png", ".bmp", *IMAGE_SUFFIXES):
        candidate = mask_dir / f"{image.stem}{suffix}"
        if candidate.is_file():
            return candidate
    raise CaptureError(f"{NAME}: no ground-truth mask for {image} (expected {mask_dir / image.stem}.png)")
