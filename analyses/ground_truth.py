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
from store import annotation as ann
from store.masks import label_masks, read_label_mask, segmentation_mask
from store.schema import CaptureConfig

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
    masks: dict[str, np.ndarray] = {}
    for label, mask in object_instances(ds, sample):
        masks[label] = masks[label] | mask if label in masks else mask
    return masks


def object_instances(ds: xr.Dataset, sample: int) -> list[tuple[str, np.ndarray]]:
    """(label, binary (H, W) mask) of every annotated instance of sample's image 0: COCO instances (crowd regions
    included, as COCO counts them); else the sample's `object` with a segmentation; else the ids of the `masks` file
    (named by `mask_labels`, or "1", "2", ...; a label named for several ids is one instance)."""
    config = CaptureConfig.of(ds.attrs)
    annotation = sample_annotation(ds, sample)
    if config.dataset in COCO_DATASETS:
        return _coco_instances(config, annotation)
    obj = annotation.get(ann.OBJECT)
    if obj and obj.get(ann.SEGMENTATION) is not None:
        height, width = int(ds.image_height.values[sample, 0]), int(ds.image_width.values[sample, 0])
        return [(obj[ann.LABEL], segmentation_mask(obj[ann.SEGMENTATION], height, width))]
    masks_path = annotation.get(ann.MASKS)
    if isinstance(masks_path, list):
        masks_path = masks_path[0]
    if not masks_path:
        return []
    return list(label_masks(read_label_mask(masks_path), annotation.get(ann.MASK_LABELS)).items())


def _coco_instances(config: CaptureConfig, annotation: dict) -> list[tuple[str, np.ndarray]]:
    """The instance masks of the annotation's COCO image with their category names."""
    path = Path(config.data_root) / "annotations" / f"instances_{config.split}.json"
    if not path.is_file():
        raise FileNotFoundError(f"COCO annotations {path} (from the store's data_root) not found")
    coco = _coco(str(path))
    return [(coco.loadCats(instance["category_id"])[0]["name"], coco.annToMask(instance).astype(bool))
            for instance in coco.loadAnns(coco.getAnnIds(imgIds=int(annotation[ann.IMAGE_ID]), iscrowd=None))]
