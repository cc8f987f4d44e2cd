"""`pascal5i`: Pascal-5i (Shaban et al. 2017), PASCAL VOC 2012 plus SBD split into four folds of five classes.

Layout under --data-root (the VOC2012 folder of VOCdevkit):

    JPEGImages/<id>.jpg
    ImageSets/Segmentation/{train,val}.txt
    SegmentationClass/<id>.png     palette PNGs: the index is the VOC class id (1..20), 0 background, 255 the
                                   unlabelled border around objects
    SegmentationObject/<id>.png    optional: instance ids in the same encoding (gives `objects`)

SBD (Hariharan et al. 2011) adds masks for training images, read as the usual few-shot loaders (PANet, PFENet,
HSNet) read them: either the converted `SegmentationClassAug/<id>.png` (grey, class ids, under the VOC2012
folder; `SegmentationObjectAug/` optional), or SBD's own release, `SBD/` or `benchmark_RELEASE/dataset/` under
the VOC2012 folder, with `cls/<id>.mat` (and `inst/<id>.mat`) and its `train.txt` / `val.txt`. A mask is taken
from SegmentationClass, else SegmentationClassAug, else SBD's cls/ (the analyses read all three).

Splits: `val` (default): the 1,449 images of VOC's val list, on which Pascal-5i is evaluated; `train`: VOC
train plus every image SBD annotates, less VOC val (the 10,582-image "trainaug" set), which needs SBD.
`--subset` folds, comma-separated: fold i holds classes 5i+1..5i+5 (fold 0: aeroplane, bicycle, bird, boat,
bottle); records are the images holding at least one class of the chosen folds (all 20 classes without one).

Records: annotation `categories` (the chosen folds' classes present, sorted: the classes a fold evaluates on
the image), `masks` (the class-id mask file), `mask_labels` (every class id present: its VOC name), `objects`
(instances with label and box, from the instance masks where they exist), `image_id`, `file_name`. Masks are
read here once (cheap PNG decodes) to find the classes present. The 255 border is in no class's mask, so
analyses count it as background for every class; the few-shot benchmarks leave it out of the IoU instead.
No minimum object size is applied (PFENet drops support masks under 2x32x32 pixels; HSNet keeps all).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import choose, read_list, read_mask, require_dir, require_file
from capture.errors import CaptureError
from store import annotation as contract

NAME = "pascal5i"
VOC_CLASSES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable",
               "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor")  # ids 1..20
N_FOLDS = 4
CLASSES_PER_FOLD = 5
BORDER = 255  # VOC's unlabelled band around objects (and "difficult" regions)
SPLITS = ("train", "val")
SBD_FOLDERS = ("SBD", "benchmark_RELEASE/dataset")


def fold_classes(fold: int) -> list[int]:
    """VOC class ids of Pascal-5i fold `fold`: 5 * fold + 1 .. 5 * fold + 5."""
    return list(range(CLASSES_PER_FOLD * fold + 1, CLASSES_PER_FOLD * (fold + 1) + 1))


def open_pascal5i(root: Path, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """Images of `split` (default val) holding a class of the chosen folds (`subset`, comma-separated, e.g. "0")."""
    split = split or "val"
    if split not in SPLITS:
        raise CaptureError(f"{NAME}: unknown --split {split!r} (choose from {', '.join(SPLITS)})")
    require_dir(root / "JPEGImages", NAME, "VOC2012 images (JPEGImages/)")
    lists = require_dir(root / "ImageSets" / "Segmentation", NAME, "VOC segmentation lists (ImageSets/Segmentation/)")
    val = read_list(require_file(lists / "val.txt", NAME, "VOC val list"))
    sbd = next((root / name for name in SBD_FOLDERS if (root / name / "cls").is_dir()), None)
    if split == "val":
        image_ids = val
    else:
        image_ids = _train_ids(root, read_list(require_file(lists / "train.txt", NAME, "VOC train list")), val, sbd)
    folds = choose(subset, [str(f) for f in range(N_FOLDS)], NAME)
    chosen = {c for f in folds for c in fold_classes(int(f))} if folds else set(range(1, len(VOC_CLASSES) + 1))
    class_mask = _finder(root, sbd, ("SegmentationClass", "SegmentationClassAug"), "cls")
    instance_mask = _finder(root, sbd, ("SegmentationObject", "SegmentationObjectAug"), "inst")
    records = []
    for image_id in image_ids:
        if limit is not None and len(records) >= limit:
            break
        mask_path = class_mask(image_id)
        if mask_path is None:
            raise CaptureError(f"{NAME}: no class mask for {image_id} (expected SegmentationClass/{image_id}.png, "
                               f"SegmentationClassAug/{image_id}.png or SBD's cls/{image_id}.mat)")
        classes = read_mask(mask_path, NAME)
        present = [int(c) for c in np.unique(classes) if 1 <= c <= len(VOC_CLASSES)]
        if not chosen.intersection(present):
            continue
        annotation: dict[str, Any] = {
            contract.IMAGE_ID: image_id,
            contract.FILE_NAME: f"JPEGImages/{image_id}.jpg",
            contract.CATEGORIES: sorted(VOC_CLASSES[c - 1] for c in present if c in chosen),
            contract.MASKS: str(mask_path.resolve()),
            contract.MASK_LABELS: {str(c): VOC_CLASSES[c - 1] for c in present},
        }
        instances_path = instance_mask(image_id)
        if instances_path is not None:
            annotation[contract.OBJECTS] = _objects(read_mask(instances_path, NAME), classes)
        records.append(Record(image_id, (root / "JPEGImages" / f"{image_id}.jpg",), annotation))
    if not records:
        raise CaptureError(f"{NAME}: no {split} image holds a class of " + (f"folds {subset}" if folds else "VOC"))
    return Dataset(NAME, root, split, records)


def _train_ids(root: Path, voc_train: list[str], val: list[str], sbd: Path | None) -> list[str]:
    """VOC train plus SBD's images, less VOC val, sorted: from SegmentationClassAug's files, or SBD's lists."""
    aug = root / "SegmentationClassAug"
    if aug.is_dir():
        extra = [p.stem for p in aug.glob("*.png")]
    elif sbd is not None:
        extra = [*read_list(require_file(sbd / "train.txt", NAME, "SBD's train list")),
                 *read_list(require_file(sbd / "val.txt", NAME, "SBD's val list"))]
    else:
        raise CaptureError(f"{NAME}: --split train needs SBD: expected {aug} or SBD's release with cls/*.mat at "
                           f"{' or '.join(str(root / name) for name in SBD_FOLDERS)}")
    return sorted(set(voc_train).union(extra).difference(val))


def _finder(root: Path, sbd: Path | None, folders: tuple[str, ...], sbd_folder: str) -> Callable[[str], Path | None]:
    """image id -> its mask: <folder>/<id>.png for the first folder holding one, else SBD's <sbd_folder>/<id>.mat."""
    places = [root / folder for folder in folders if (root / folder).is_dir()]

    def find(image_id: str) -> Path | None:
        for place in places:
            if (place / f"{image_id}.png").is_file():
                return place / f"{image_id}.png"
        if sbd is not None and (sbd / sbd_folder / f"{image_id}.mat").is_file():
            return sbd / sbd_folder / f"{image_id}.mat"
        return None

    return find


def _objects(instances: np.ndarray, classes: np.ndarray) -> list[dict[str, Any]]:
    """Instances of an instance-id map: label = the VOC class most of its pixels have in the class map, box =
    the pixel edges around it [x1, y1, x2 + 1, y2 + 1]."""
    objects = []
    for instance in np.unique(instances):
        if instance in (0, BORDER):
            continue
        inside = instances == instance
        votes = np.bincount(classes[inside].ravel(), minlength=BORDER + 1)[1:len(VOC_CLASSES) + 1]
        if not votes.any():
            continue
        ys, xs = np.nonzero(inside)
        objects.append({contract.OBJECT_ID: int(instance), contract.LABEL: VOC_CLASSES[int(votes.argmax())],
                        contract.BOX: [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]})
    return objects
