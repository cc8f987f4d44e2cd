"""`synthetic-coco`: a generated, deterministic COCO-format dataset for tests and the demo.

Real JPEG files of coloured shapes on textured backgrounds, instance masks (polygons), categories
and two captions per image, laid out exactly like COCO so the `coco` reader opens it. Image sizes
vary so that every anyres path (small grids, letterboxing, downsampling) is exercised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from capture.datasets.base import Dataset
from capture.datasets.coco import annotation_paths, open_coco
from capture.errors import CaptureError
from capture.paths import cache_home, staged_directory

GENERATOR_VERSION = 1
DEFAULT_SPLIT = "val2017"
DEFAULT_N_IMAGES = 12
CATEGORIES = ["circle", "square", "triangle", "diamond"]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (235, 210, 40)}
SIZES = [(640, 480), (480, 640), (320, 240), (100, 80), (224, 224), (300, 120), (500, 375), (56, 56)]  # (w, h)


def default_root() -> Path:
    return cache_home() / "datasets" / "synthetic-coco"


def _shape_polygon(category: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if category == "circle":
        return [(cx + r * math.cos(a), cy + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 32, endpoint=False)]
    if category == "square":
        return [(cx - r, cy - r), (cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    if category == "triangle":
        return [(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)]
    return [(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)]  # diamond


@dataclass(frozen=True)
class SceneObject:
    """One drawn shape: its category, colour name and polygon vertices (x, y) in pixels."""

    category: str
    colour: str
    polygon: list[tuple[float, float]]

    @property
    def phrase(self) -> str:
        return f"a {self.colour} {self.category}"


def draw_scene(rng: np.random.RandomState, width: int, height: int, max_objects: int = 3) -> tuple[Image.Image, list[SceneObject]]:
    """A textured background with 1..`max_objects` coloured shapes drawn in order (later ones on top)."""
    base = rng.randint(60, 200, size=3)
    gradient = np.linspace(0, 40, width)[None, :, None] + np.linspace(0, 30, height)[:, None, None]
    pixels = base[None, None, :] + gradient + rng.normal(0, 8, size=(height, width, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    objects = []
    for _ in range(rng.randint(1, max_objects + 1)):
        category = CATEGORIES[rng.randint(len(CATEGORIES))]
        colour = list(COLOURS)[rng.randint(len(COLOURS))]
        r = rng.uniform(0.12, 0.3) * min(width, height)
        cx, cy = rng.uniform(r, width - r), rng.uniform(r, height - r)
        polygon = [(round(x, 2), round(y, 2)) for x, y in _shape_polygon(category, cx, cy, r)]
        draw.polygon(polygon, fill=COLOURS[colour])
        objects.append(SceneObject(category, colour, polygon))
    return image, objects


def scene_caption(objects: list[SceneObject]) -> str:
    """The first caption of a scene: its objects' phrases listed, e.g. "a red circle and a blue square on ..."."""
    phrases = [o.phrase for o in objects]
    listing = ", ".join(phrases[:-1]) + (" and " if len(phrases) > 1 else "") + phrases[-1]
    return f"{listing} on a plain background."


def generate(root: Path, n_images: int = DEFAULT_N_IMAGES, split: str = DEFAULT_SPLIT, seed: int = 0) -> Path:
    """Write the dataset under `root` (replaced whole); the same arguments give the same bytes."""
    rng = np.random.RandomState(seed)
    with staged_directory(root) as staging:
        (staging / split).mkdir()
        (staging / "annotations").mkdir()
        images, instances, captions = [], [], []
        for index in range(n_images):
            image_id = index + 1
            width, height = SIZES[index % len(SIZES)]
            image, objects = draw_scene(rng, width, height)
            for obj in objects:
                xs, ys = [p[0] for p in obj.polygon], [p[1] for p in obj.polygon]
                instances.append({
                    "id": len(instances) + 1,
                    "image_id": image_id,
                    "category_id": CATEGORIES.index(obj.category) + 1,
                    "segmentation": [[v for point in obj.polygon for v in point]],
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "area": float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))),
                    "iscrowd": 0,
                })
            file_name = f"{image_id:012d}.jpg"
            image.save(staging / split / file_name, format="JPEG", quality=90)
            images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
            captions.append({"id": 2 * index + 1, "image_id": image_id, "caption": scene_caption(objects)})
            captions.append({"id": 2 * index + 2, "image_id": image_id, "caption": f"A picture with {len(objects)} shapes."})
        categories = [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CATEGORIES)]
        info = {"description": "synthetic-coco", "version": GENERATOR_VERSION, "seed": seed}
        instances_path, captions_path = (staging / "annotations" / p.name for p in annotation_paths(root, split))
        instances_path.write_text(json.dumps({"info": info, "images": images, "annotations": instances, "categories": categories}))
        captions_path.write_text(json.dumps({"info": info, "images": images, "annotations": captions}))
        (staging / "synthetic_coco.json").write_text(
            json.dumps({"version": GENERATOR_VERSION, "n_images": n_images, "split": split, "seed": seed}) + "\n"
        )
    return root


def ensure_generated(root: Path, n_images: int = DEFAULT_N_IMAGES, split: str = DEFAULT_SPLIT) -> Path:
    """`root`, generating it unless it already holds this exact dataset."""
    marker = root / "synthetic_coco.json"
    wanted = {"version": GENERATOR_VERSION, "n_images": n_images, "split": split, "seed": 0}
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        return root
    if root.exists() and not marker.is_file():
        raise CaptureError(f"{root} exists and is not a synthetic-coco dataset; refusing to replace it")
    return generate(root, n_images, split)


def open_synthetic_coco(root: Path | None, split: str | None, limit: int | None) -> Dataset:
    root = ensure_generated(root or default_root(), split=split or DEFAULT_SPLIT)
    return open_coco(root, split or DEFAULT_SPLIT, limit, name="synthetic-coco")
