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
from store import annotation as ann
from store.schema import CaptureConfig

COCO_DATASETS = ("coco", "synthetic-coco")


@cache
def _coco(instances_path: str):
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(instances_path)


def object_masks(ds: xr.Dataset, sample: int) -> dict[str, np.ndarray]:
    """Binary (H, W) masks of sample's image 0 by label: COCO categories (union of their instances), or a
    manifest record's `masks` file (each non-zero id as label "1", "2", ...)."""
    masks: dict[str, np.ndarray] = {}
    for label, mask in object_instances(ds, sample):
        masks[label] = masks[label] | mask if label in masks else mask
    return masks


def object_instances(ds: xr.Dataset, sample: int) -> list[tuple[str, np.ndarray]]:
    """(label, binary (H, W) mask) of every annotated instance of sample's image 0: COCO instances (crowd regions
    included, as COCO counts them), or the ids of a manifest record's `masks` file (labels "1", "2", ...)."""
    config = CaptureConfig.of(ds.attrs)
    annotation = sample_annotation(ds, sample)
    if config.dataset in COCO_DATASETS:
        return _coco_instances(config, annotation)
    masks_path = annotation.get(ann.MASKS)
    if isinstance(masks_path, list):
        masks_path = masks_path[0]
    if not masks_path:
        return []
    ids = load_mask(masks_path)
    return [(str(i), ids == i) for i in np.unique(ids) if i != 0]


def _coco_instances(config: CaptureConfig, annotation: dict) -> list[tuple[str, np.ndarray]]:
    """The instance masks of the annotation's COCO image with their category names."""
    path = Path(config.data_root) / "annotations" / f"instances_{config.split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations {path} (from the store's data_root) not found")
    coco = _coco(str(path))
    return [(coco.loadCats(instance["category_id"])[0]["name"], coco.annToMask(instance).astype(bool))
            for instance in coco.loadAnns(coco.getAnnIds(imgIds=int(annotation[ann.IMAGE_ID]), iscrowd=None))]
