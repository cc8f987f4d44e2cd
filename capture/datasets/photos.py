"""`photos`: real photographs that ship inside installed packages, with the annotations they carry.

Single photos (subset "photos"): scikit-image's sample photographs, scikit-learn's china / flower, matplotlib's
grace_hopper and imgaug's quokka (the file is fetched from the imgaug==0.4.0 wheel, imgaug is never imported),
each with one caption written by hand (`photos.json`). The quokka also carries its box, its 7 named keypoints
and its outline polygon (as `objects[0].segmentation` and as a label-id mask: 0 background, 1 quokka).

Pairs (subset "pairs"), 2-image records with matching `keypoints` and `bboxes`:
- `motorcycle-stereo`: the rectified Middlebury stereo pair with its ground-truth disparity d (left image): a grid
  of left-image pixels every `STEREO_STEP` px, each matched to (x - d, y) in the right image; pixels of unknown
  disparity (inf) or matched outside the right image are left out. Points are pixel centres (column + 0.5);
  the boxes are the whole images (no object box exists: PCK is normalised by the image size);
- `quokka-flip` / `quokka-scale` / `quokka-crop`: the quokka and a copy made by a known transform (mirror, half
  size, a crop that cuts the paws off), the keypoints, box and mask mapped by that transform (a keypoint that
  leaves the crop becomes None). Coordinates are continuous: a mirror maps x to width - x.

Everything is copied or generated into one folder (the cache, or --data-root) with a manifest, deterministic
and versioned like the synthetic data sets; records read through the `manifest` reader.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from capture.datasets.base import Dataset
from capture.datasets.manifest import MANIFEST_NAME, open_manifest
from capture.errors import CaptureError
from capture.paths import cache_home, staged_directory
from store import annotation as ann

GENERATOR_VERSION = 1
CATALOGUE = Path(__file__).with_name("photos.json")
SUBSETS = ("photos", "pairs")
STEREO_STEP = 40  # px between grid points in the left image
STEREO_MARGIN = 20
QUOKKA_LABEL = "quokka"
# name -> how the second image of a quokka pair is made
QUOKKA_TRANSFORMS = {
    "flip": {"type": "flip"},
    "scale": {"type": "scale", "factor": 0.5},
    "crop": {"type": "crop", "box": [100, 30, 600, 480]},  # x0, y0, x1, y1: keeps the head, cuts the paws off
}


def default_root() -> Path:
    return cache_home() / "datasets" / "photos"


def catalogue() -> dict[str, Any]:
    """The photo list with hand-written captions (`photos.json`)."""
    return json.loads(CATALOGUE.read_text())


def package_file(package: str, path: str) -> Path:
    """A file inside an installed package (imgaug's: fetched from its pinned wheel); CaptureError if absent."""
    if package == "imgaug":
        from capture.real_parts.fetch import member_path

        return member_path("imgaug", path)
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise CaptureError(f"the photos data set needs the package {package!r}, which is not installed")
    found = Path(spec.origin).parent / path
    if not found.is_file():
        raise CaptureError(f"{found} is missing from the installed {package}")
    return found


def stereo_matches(disparity: np.ndarray, step: int = STEREO_STEP, margin: int = STEREO_MARGIN) -> tuple[list, list]:
    """(left points, right points) [x, y] of a grid of left-image pixel centres and their matches x - d(x, y) in the
    right image, for the pixels with a finite disparity whose match lies inside the right image."""
    height, width = disparity.shape
    left, right = [], []
    for row in range(margin, height - margin + 1, step):
        for col in range(margin, width - margin + 1, step):
            d = float(disparity[row, col])
            x, y = col + 0.5, row + 0.5
            if np.isfinite(d) and 0 <= x - d < width:
                left.append([round(x, 2), round(y, 2)])
                right.append([round(x - d, 2), round(y, 2)])
    return left, right


def map_points(points: list, transform: dict[str, Any], size: tuple[int, int]) -> list:
    """`points` ([x, y] or None) of a `size` (w, h) image mapped by `transform`; None where a crop drops them."""
    width, height = size
    mapped = []
    for point in points:
        if point is None:
            mapped.append(None)
            continue
        x, y = point
        if transform["type"] == "flip":
            x = width - x
        elif transform["type"] == "scale":
            new_w, new_h = scaled_size(size, transform["factor"])
            x, y = x * new_w / width, y * new_h / height
        else:
            x0, y0, x1, y1 = transform["box"]
            x, y = x - x0, y - y0
            if not (0 <= x <= x1 - x0 and 0 <= y <= y1 - y0):
                mapped.append(None)
                continue
        mapped.append([round(x, 2), round(y, 2)])
    return mapped


def map_box(box: list[float], transform: dict[str, Any], size: tuple[int, int]) -> list[float]:
    """A pixel box [x1, y1, x2, y2] mapped by `transform` (clipped to a crop)."""
    width, height = size
    x1, y1, x2, y2 = box
    if transform["type"] == "flip":
        return [width - x2, y1, width - x1, y2]
    if transform["type"] == "scale":
        new_w, new_h = scaled_size(size, transform["factor"])
        return [round(v, 2) for v in (x1 * new_w / width, y1 * new_h / height, x2 * new_w / width, y2 * new_h / height)]
    cx0, cy0, cx1, cy1 = transform["box"]
    return [float(max(x1 - cx0, 0)), float(max(y1 - cy0, 0)), float(min(x2 - cx0, cx1 - cx0)), float(min(y2 - cy0, cy1 - cy0))]


def scaled_size(size: tuple[int, int], factor: float) -> tuple[int, int]:
    return round(size[0] * factor), round(size[1] * factor)


def map_image(image: Image.Image, transform: dict[str, Any], resample: int) -> Image.Image:
    if transform["type"] == "flip":
        return image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    if transform["type"] == "scale":
        return image.resize(scaled_size(image.size, transform["factor"]), resample)
    return image.crop(tuple(transform["box"]))


def _quokka(folder: Path, caption: str) -> list[dict[str, Any]]:
    """The quokka's single record and its transformed pairs (images and masks written into `folder`)."""
    from capture.real_parts.fetch import QUOKKA_JPG, QUOKKA_JSON

    source = json.loads(package_file("imgaug", QUOKKA_JSON).read_text())
    image = Image.open(package_file("imgaug", QUOKKA_JPG)).convert("RGB")
    image.save(folder / "quokka.jpg", quality=95)
    box_entry = source["bounding_boxes"][0]
    box = [float(box_entry[k]) for k in ("x1", "y1", "x2", "y2")]
    names = [kp["label"] for kp in source["keypoints"]]
    points = [[float(kp["x"]), float(kp["y"])] for kp in source["keypoints"]]
    outline = [(float(p["x"]), float(p["y"])) for p in source["polygons"][0]["keypoints"]]
    mask = Image.new("L", image.size, 0)
    ImageDraw.Draw(mask).polygon(outline, fill=1)
    mask.save(folder / "quokka_mask.png")
    obj = {ann.OBJECT_ID: 1, ann.LABEL: QUOKKA_LABEL, ann.BOX: box,
           ann.SEGMENTATION: [[v for point in outline for v in point]]}
    records = [{"id": "quokka", "image": "quokka.jpg", ann.CAPTIONS: [caption], ann.OBJECTS: [obj],
                ann.KEYPOINTS: [points], ann.KEYPOINT_NAMES: names, ann.BBOXES: [box], ann.MASKS: "quokka_mask.png",
                ann.CATEGORY: QUOKKA_LABEL}]
    for name, transform in QUOKKA_TRANSFORMS.items():
        map_image(image, transform, Image.Resampling.BICUBIC).save(folder / f"quokka_{name}.jpg", quality=95)
        map_image(mask, transform, Image.Resampling.NEAREST).save(folder / f"quokka_{name}_mask.png")
        records.append({
            "id": f"quokka-{name}", "images": ["quokka.jpg", f"quokka_{name}.jpg"],
            ann.KEYPOINTS: [points, map_points(points, transform, image.size)], ann.KEYPOINT_NAMES: names,
            ann.BBOXES: [box, map_box(box, transform, image.size)],
            ann.MASKS: ["quokka_mask.png", f"quokka_{name}_mask.png"], ann.CATEGORY: QUOKKA_LABEL, "transform": transform,
        })
    return records


def _stereo(folder: Path, entry: dict[str, Any]) -> dict[str, Any]:
    names = []
    for side in ("left", "right"):
        source = package_file(entry["package"], entry[side])
        shutil.copyfile(source, folder / source.name)
        names.append(source.name)
    disparity = np.load(package_file(entry["package"], entry["disparity"]))["arr_0"]
    left, right = stereo_matches(disparity)
    height, width = disparity.shape
    whole = [0.0, 0.0, float(width), float(height)]
    return {"id": entry["id"], "images": names, ann.KEYPOINTS: [left, right], ann.BBOXES: [whole, whole],
            ann.CAPTIONS: [entry["caption"]], ann.CATEGORY: "motorcycle"}


def generate(root: Path) -> Path:
    """Copy the photos and write the pairs and the manifest under `root` (replaced whole)."""
    listing = catalogue()
    with staged_directory(root) as staging:
        records = []
        for photo in listing["photos"]:
            if photo["package"] == "imgaug":
                records += _quokka(staging, photo["caption"])
                continue
            source = package_file(photo["package"], photo["path"])
            name = f"{photo['id']}{source.suffix}"
            shutil.copyfile(source, staging / name)
            records.append({"id": photo["id"], "image": name, ann.CAPTIONS: [photo["caption"]],
                            ann.FILE_NAME: f"{photo['package']}/{photo['path']}"})
        records.append(_stereo(staging, listing["stereo"]))
        (staging / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
        (staging / "photos.json").write_text(json.dumps({"version": GENERATOR_VERSION}) + "\n")
    return root


def ensure_generated(root: Path) -> Path:
    marker = root / "photos.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"version": GENERATOR_VERSION}:
        return root
    if root.exists() and not marker.is_file():
        raise CaptureError(f"{root} exists and is not a photos data set; refusing to replace it")
    return generate(root)


def open_photos(root: Path | None, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """The photos data set: every record, or the single "photos" or the 2-image "pairs" only."""
    if subset is not None and subset not in SUBSETS:
        raise CaptureError(f"unknown --subset {subset!r} of photos (choose from {', '.join(SUBSETS)})")
    dataset = open_manifest(ensure_generated(root or default_root()))
    records = dataset.records
    if subset is not None:
        records = [r for r in records if (len(r.image_paths) == 1) == (subset == "photos")]
    return Dataset("photos", dataset.root, None, records[:limit] if limit is not None else records)
