"""Where an object lies in image 0, in pixels: its mask where the data has one, its box otherwise.

Masks come from an object's COCO `segmentation` (polygons or RLE, decoded by pycocotools) or from a manifest
record's label-id mask file (id k is the k-th object of the record; records without objects name their ids "1",
"2", ...). The region a token set used is recorded with every result (`AUTO` picks per instance).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as coco_mask

from analyses.correspondence import load_mask
from store import annotation as ann

AUTO, MASK, BOX = "auto", "mask", "box"
REGIONS = (AUTO, MASK, BOX)


class RegionError(ValueError):
    """An object region that cannot be built (one line)."""


@dataclass(frozen=True)
class Region:
    """The union of a label's instances: (H, W) bool pixels, and what it was built from ("mask", "box", or
    "mask and box" when only some instances have a mask)."""

    pixels: np.ndarray
    source: str

    @property
    def area(self) -> int:
        return int(self.pixels.sum())


def instances(annotation: dict[str, Any], label: str | None = None) -> list[dict[str, Any]]:
    """The annotated instances of image 0 with `label` (every one when None); a manifest mask file without
    objects gives one pseudo-instance per id, labelled by the id."""
    objects = ann.objects(annotation)
    if not objects and _mask_file(annotation):
        ids = np.unique(load_mask(_mask_file(annotation)))
        objects = [{ann.OBJECT_ID: int(i), ann.LABEL: str(int(i)), "mask_id": int(i)} for i in ids if i != 0]
    return [o for o in objects if label is None or o[ann.LABEL] == label]


def object_region(annotation: dict[str, Any], label: str | None, image_size: tuple[int, int],
                  region: str = AUTO) -> Region | None:
    """The pixels of `label`'s instances in an image of `image_size` (height, width); None when it has none.
    `region`: AUTO (each instance's mask when it has one, else its box), MASK (refused without one) or BOX."""
    if region not in REGIONS:
        raise RegionError(f"object region {region!r}: choose from {', '.join(REGIONS)}")
    chosen = instances(annotation, label)
    if not chosen:
        return None
    pixels = np.zeros(image_size, bool)
    sources = set()
    for obj in chosen:
        mask = None if region == BOX else instance_mask(annotation, obj, image_size)
        if mask is None and region == MASK:
            raise RegionError(f"object {obj.get(ann.OBJECT_ID)} ({obj[ann.LABEL]}) has no mask (object_region: mask)")
        pixels |= box_mask(obj[ann.BOX], image_size) if mask is None else mask
        sources.add(BOX if mask is None else MASK)
    return Region(pixels, " and ".join(sorted(sources, reverse=True)))


def instance_mask(annotation: dict[str, Any], obj: dict[str, Any], image_size: tuple[int, int]) -> np.ndarray | None:
    """An instance's (H, W) bool mask from its segmentation or the record's mask file; None without either."""
    height, width = image_size
    segmentation = obj.get(ann.SEGMENTATION)
    if segmentation:
        if isinstance(segmentation, list):  # polygons
            rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
        elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
            rle = coco_mask.frPyObjects(segmentation, height, width)
        else:
            rle = segmentation
        return coco_mask.decode(rle).astype(bool)
    path = _mask_file(annotation)
    if not path:
        return None
    ids = load_mask(path)
    if ids.shape != tuple(image_size):
        raise RegionError(f"mask file {path} is {ids.shape[1]}x{ids.shape[0]}, the image {width}x{height}")
    mask_id = obj["mask_id"] if "mask_id" in obj else ann.objects(annotation).index(obj) + 1  # id k: k-th object
    return ids == mask_id


def box_mask(box: list[float], image_size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool: every pixel the box [x1, y1, x2, y2] (pixel corners) touches."""
    height, width = image_size
    x1, y1, x2, y2 = box
    pixels = np.zeros(image_size, bool)
    pixels[max(int(np.floor(y1)), 0):min(int(np.ceil(y2)), height), max(int(np.floor(x1)), 0):min(int(np.ceil(x2)), width)] = True
    return pixels


def _mask_file(annotation: dict[str, Any]) -> str | None:
    """The record's mask file of image 0."""
    masks = annotation.get(ann.MASKS)
    return masks[0] if isinstance(masks, list) and masks else masks or None
