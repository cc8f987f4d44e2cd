"""Ground truth for scoring, from the dataset a store was captured from: COCO instance masks (pycocotools),
a sample object's own segmentation, and mask files. The store's attributes say where the dataset lives; nothing
here loads a model."""

from __future__ import annotations

import contextlib
import io
from functools import cache
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.tokens import sample_annotation
from store import annotation as contract
from store.masks import label_masks, read_label_mask, segmentation_mask

COCO_DATASETS = ("coco", "synthetic-coco")


@cache
def _coco(instances_path: str):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(instances_path)


def object_masks(ds: xr.Dataset, sample: int) -> dict[str, np.ndarray]:
    """Binary (H, W) masks of sample's image 0 by label: COCO categories (union of their instances); else the
    sample's `object` when it carries a segmentation (RefCOCO: the referred instance, by its label); else the
    `masks` file, ids named by `mask_labels` (VOC classes, a co-segmentation class) or "1", "2", ..."""
    config = ds.attrs["capture_config"]
    annotation = sample_annotation(ds, sample)
    if config["dataset"] in COCO_DATASETS:
        root = Path(config["data_root"])
        path = root / "annotations" / f"instances_{config['split']}.json"
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotations {path} (from the store's data_root) not found")
        coco = _coco(str(path))
        image_id = int(annotation["image_id"])
        masks: dict[str, np.ndarray] = {}
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=None)):
            name = coco.loadCats(ann["category_id"])[0]["name"]
            mask = coco.annToMask(ann).astype(bool)
            masks[name] = masks[name] | mask if name in masks else mask
        return masks
    obj = annotation.get(contract.OBJECT)
    if obj and obj.get(contract.SEGMENTATION) is not None:
        height, width = int(ds.image_height.values[sample, 0]), int(ds.image_width.values[sample, 0])
        return {obj[contract.LABEL]: segmentation_mask(obj[contract.SEGMENTATION], height, width)}
    masks_path = annotation.get(contract.MASKS)
    if isinstance(masks_path, list):
        masks_path = masks_path[0]
    if not masks_path:
        return {}
    return label_masks(read_label_mask(masks_path), annotation.get(contract.MASK_LABELS))
