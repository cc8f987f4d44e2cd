"""Ground-truth masks as the sample-annotation contract stores them, decoded to arrays.

A record's `masks` names a label-id file: a palette or grey PNG (the pixel index is the id: DAVIS, VOC), an RGB
image (each colour one id, black 0), or an SBD `.mat` file (`GTcls` / `GTinst`, the `Segmentation` field). An
object's `segmentation` is COCO polygons or RLE. `mask_labels` maps ids to labels. Nothing here loads a model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

SBD_STRUCTS = ("GTcls", "GTinst")  # SBD's class and instance files: a struct whose `Segmentation` is the id map


def read_label_mask(path: str | Path) -> np.ndarray:
    """An (H, W) int64 id map from a mask file: palette / grey PNGs as their indices, RGB colours numbered in
    sorted order with black as background 0, SBD `.mat` files as their `Segmentation` field. OSError for a
    missing or undecodable image, ValueError for a .mat file without a segmentation."""
    path = Path(path)
    if path.suffix.lower() == ".mat":
        return _read_sbd_mat(path)
    image = Image.open(path)
    if image.mode in ("P", "L", "I", "I;16", "1"):
        return np.asarray(image).astype(np.int64)
    rgb = np.asarray(image.convert("RGB")).reshape(-1, 3)
    colours, ids = np.unique(rgb, axis=0, return_inverse=True)
    black = np.flatnonzero((colours == 0).all(axis=1))
    if len(black):  # renumber so black is 0
        order = np.concatenate([black, np.setdiff1d(np.arange(len(colours)), black)])
        ids = np.argsort(order)[ids]
    return ids.reshape(image.height, image.width).astype(np.int64)


def _read_sbd_mat(path: Path) -> np.ndarray:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path, squeeze_me=True, struct_as_record=False)
    except MatReadError as error:
        raise ValueError(f"{path}: not a MATLAB file ({error})") from None
    for name in SBD_STRUCTS:
        if name in content:
            return np.asarray(content[name].Segmentation).astype(np.int64)
    raise ValueError(f"{path} holds none of {', '.join(SBD_STRUCTS)} (expected an SBD cls/ or inst/ file)")


def label_masks(ids: np.ndarray, mask_labels: dict[str, str] | None = None) -> dict[str, np.ndarray]:
    """Boolean (H, W) masks by label from an id map.

    With `mask_labels` ({id as a string: label}), each label's mask is the union of its ids, and every label
    listed gets a mask (all False when none of its ids occurs); ids not listed (VOC's 255 border) belong to no
    label. Without it, each non-zero id present is its own label ("1", "2", ...).
    """
    if mask_labels is None:
        return {str(i): ids == i for i in np.unique(ids) if i != 0}
    masks: dict[str, np.ndarray] = {}
    for key, label in mask_labels.items():
        hit = ids == int(key)
        masks[label] = masks[label] | hit if label in masks else hit
    return masks


def segmentation_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of a COCO segmentation: polygons [[x, y, ...], ...] (a pixel is inside when
    its square is, pycocotools' rasterisation), uncompressed RLE {"size", "counts": [...]}, or compressed RLE
    {"size", "counts": "..."}."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):
        rle = coco_mask.merge(coco_mask.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
        rle = coco_mask.frPyObjects(segmentation, *segmentation["size"])
    elif isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str | bytes):
        counts = segmentation["counts"]
        rle = {"size": segmentation["size"], "counts": counts.encode() if isinstance(counts, str) else counts}
    else:
        raise ValueError(f"not a COCO segmentation (polygons or RLE): {str(segmentation)[:80]}")
    return coco_mask.decode(rle).astype(bool)
