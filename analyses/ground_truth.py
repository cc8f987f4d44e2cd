"""Ground truth for scoring, from the dataset a store was captured from: COCO instance masks (pycocotools)
and manifest mask files. The store's attributes say where the dataset lives; nothing here loads a model."""

from __future__ import annotations

import contextlib
import io
from functools import cache
from pathlib import Path

import numpy as np
import xarray as xr

from analyses.correspondence import load_mask
from analyses.tokens import sample_annotation

COCO_DATASETS = ("coco", "synthetic-coco")


@cache
def _coco(instances_path: str):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(instances_path)


def object_masks(ds: xr.Dataset, sample: int) -> dict[str, np.ndarray]:
    """Binary (H, W) masks of sample's image 0 by label: COCO categories (union of their instances), or a
    manifest record's `masks` file (each non-zero id as label "1", "2", ...)."""
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
    masks_path = annotation.get("masks")
    if isinstance(masks_path, list):
        masks_path = masks_path[0]
    if not masks_path:
        return {}
    ids = load_mask(masks_path)
    return {str(i): ids == i for i in np.unique(ids) if i != 0}
