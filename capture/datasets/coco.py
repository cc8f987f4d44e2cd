"""`coco`: a COCO-format dataset, `<root>/annotations/{instances,captions}_<split>.json` + `<root>/<split>/`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

from capture.datasets.base import Dataset, Record
from capture.errors import CaptureError


def annotation_paths(root: Path, split: str) -> tuple[Path, Path]:
    return root / "annotations" / f"instances_{split}.json", root / "annotations" / f"captions_{split}.json"


def open_coco(root: Path, split: str, limit: int | None = None, name: str = "coco") -> Dataset:
    """Records for the images of `split`, sorted by image id; annotations keep id, captions and categories."""
    from pycocotools.coco import COCO

    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected annotations/ and {split}/ inside)")
    instances_path, captions_path = annotation_paths(root, split)
    for path in (instances_path, captions_path):
        if not path.is_file():
            raise CaptureError(f"COCO annotation file {path} not found (split {split!r})")
    image_dir = root / split
    if not image_dir.is_dir():
        raise CaptureError(f"COCO image folder {image_dir} not found (split {split!r})")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            instances = COCO(str(instances_path))
        captions = json.loads(captions_path.read_text())
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CaptureError(f"malformed COCO annotations under {root / 'annotations'}: {error}") from None

    captions_by_image: dict[int, list[str]] = {}
    for entry in captions.get("annotations", []):
        captions_by_image.setdefault(entry["image_id"], []).append(entry["caption"])
    records = []
    for image_id in sorted(instances.getImgIds())[:limit]:
        info = instances.loadImgs(image_id)[0]
        objects = instances.loadAnns(instances.getAnnIds(imgIds=image_id))
        names = {c["id"]: c["name"] for c in instances.loadCats(sorted({a["category_id"] for a in objects}))}
        annotation = {
            "image_id": image_id,
            "file_name": info["file_name"],
            "captions": captions_by_image.get(image_id, []),
            "categories": [names[i] for i in sorted(names)],
            "objects": [_object(a, names[a["category_id"]]) for a in objects],
        }
        records.append(Record(str(image_id), (image_dir / info["file_name"],), annotation))
    return Dataset(name, root, split, records)


def _object(annotation: dict, label: str) -> dict:
    """One instance: COCO's x, y, w, h box as pixel corners x1, y1, x2, y2, and its segmentation (polygons or RLE)
    where it has one, so that object tokens can follow the mask."""
    x, y, w, h = annotation["bbox"]
    obj = {"id": annotation["id"], "label": label, "box": [x, y, x + w, y + h], "iscrowd": annotation.get("iscrowd", 0)}
    if annotation.get("segmentation"):
        obj["segmentation"] = annotation["segmentation"]
    return obj
