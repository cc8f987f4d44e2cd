"""`synthetic-correspondence`: a generated manifest of keypoint pairs, choice trials and short videos with masks.

Pairs (SPair-71k style): a shape on a textured background, and the same shape moved, rescaled and
sometimes mirrored on another background; its polygon vertices and centre are the keypoints, with both
images' object boxes. Choice trials (BLINK style): a reference and two candidates, one of the same shape.
Videos (DAVIS style): a shape crossing a fixed background, one palette mask per
frame. Deterministic: the same version and seed give the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from capture.datasets.base import Dataset
from capture.datasets.manifest import MANIFEST_NAME, open_manifest
from capture.datasets.synthetic_coco import CATEGORIES, COLOURS, _shape_polygon
from capture.errors import CaptureError
from capture.paths import cache_home, staged_directory

GENERATOR_VERSION = 2
N_PAIRS = 6
N_VIDEOS = 2
N_FRAMES = 6
PAIR_SIZE = (320, 240)  # (w, h)
VIDEO_SIZE = (192, 144)


def default_root() -> Path:
    return cache_home() / "datasets" / "synthetic-correspondence"


def _background(rng: np.random.RandomState, width: int, height: int) -> Image.Image:
    base = rng.randint(60, 200, size=3)
    gradient = np.linspace(0, 40, width)[None, :, None] + np.linspace(0, 30, height)[:, None, None]
    pixels = base[None, None, :] + gradient + rng.normal(0, 8, size=(height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _pair(rng: np.random.RandomState, index: int, folder: Path) -> dict:
    width, height = PAIR_SIZE
    category = CATEGORIES[index % len(CATEGORIES)]
    colour = COLOURS[list(COLOURS)[rng.randint(len(COLOURS))]]
    views = []
    for view in range(2):
        radius = rng.uniform(0.18, 0.3) * height
        cx, cy = rng.uniform(radius, width - radius), rng.uniform(radius, height - radius)
        polygon = _shape_polygon(category, cx, cy, radius)
        if category == "circle":
            polygon = polygon[::4]  # 8 keypoints around the circle
        points = [*polygon, (cx, cy)]
        mirrored = view == 1 and index % 2 == 1
        if mirrored:  # mirror about the shape's own vertical axis: keypoint k stays on the same part
            points = [(2 * cx - x, y) for x, y in points]
        image = _background(rng, width, height)
        ImageDraw.Draw(image).polygon([tuple(p) for p in points[:-1]], fill=colour)
        name = f"pair{index:02d}_{'ab'[view]}.jpg"
        image.save(folder / name, quality=92)
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        views.append((name, [[round(x, 2), round(y, 2)] for x, y in points],
                      [round(min(xs), 2), round(min(ys), 2), round(max(xs), 2), round(max(ys), 2)]))
    return {"id": f"pair{index:02d}", "images": [v[0] for v in views], "keypoints": [v[1] for v in views],
            "bboxes": [v[2] for v in views], "category": category}


def _choices(pairs: list[dict]) -> list[dict]:
    """BLINK-style trials: a reference (a pair's first image), the pair's second image and another pair's second
    image as candidates; `answer` is the index in `images` of the matching one."""
    trials = []
    for i, pair in enumerate(pairs):
        other = pairs[(i + 1) % len(pairs)]
        match, distractor = pair["images"][1], other["images"][1]
        candidates, answer = ([match, distractor], 1) if i % 2 == 0 else ([distractor, match], 2)
        trials.append({"id": f"choice{i:02d}", "images": [pair["images"][0], *candidates], "answer": answer,
                       "category": pair["category"]})
    return trials


def _video(rng: np.random.RandomState, index: int, folder: Path) -> list[dict]:
    width, height = VIDEO_SIZE
    category = CATEGORIES[(index + 1) % len(CATEGORIES)]
    colour = COLOURS[list(COLOURS)[rng.randint(len(COLOURS))]]
    background = _background(rng, width, height)
    radius = 0.22 * height
    start = np.array([radius + 4, rng.uniform(radius, height - radius)])
    end = np.array([width - radius - 4, rng.uniform(radius, height - radius)])
    records = []
    for frame in range(N_FRAMES):
        cx, cy = start + (end - start) * frame / (N_FRAMES - 1)
        polygon = [tuple(p) for p in _shape_polygon(category, cx, cy, radius)]
        image = background.copy()
        ImageDraw.Draw(image).polygon(polygon, fill=colour)
        mask = Image.new("L", (width, height), 0)
        ImageDraw.Draw(mask).polygon(polygon, fill=1)
        name = f"video{index}_{frame:02d}"
        image.save(folder / f"{name}.jpg", quality=92)
        mask.save(folder / f"{name}_mask.png")
        records.append({"id": name, "image": f"{name}.jpg", "video": f"video{index}", "frame": frame,
                        "masks": f"{name}_mask.png", "category": category})
    return records


def generate(root: Path, seed: int = 0) -> Path:
    """Write the dataset under `root` (replaced whole)."""
    rng = np.random.RandomState(seed)
    with staged_directory(root) as staging:
        records = [_pair(rng, i, staging) for i in range(N_PAIRS)]
        records += _choices(records)
        for v in range(N_VIDEOS):
            records += _video(rng, v, staging)
        (staging / MANIFEST_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
        (staging / "synthetic_correspondence.json").write_text(json.dumps({"version": GENERATOR_VERSION, "seed": seed}) + "\n")
    return root


def ensure_generated(root: Path) -> Path:
    marker = root / "synthetic_correspondence.json"
    if marker.is_file() and json.loads(marker.read_text()) == {"version": GENERATOR_VERSION, "seed": 0}:
        return root
    if root.exists() and not marker.is_file():
        raise CaptureError(f"{root} exists and is not a synthetic-correspondence dataset; refusing to replace it")
    return generate(root)


def open_synthetic_correspondence(root: Path | None, limit: int | None) -> Dataset:
    dataset = open_manifest(ensure_generated(root or default_root()), limit)
    return Dataset("synthetic-correspondence", dataset.root, None, dataset.records)
