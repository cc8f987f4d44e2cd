"""`manifest`: a JSONL file with one record per line, for data no built-in adapter reads.

Each line is an object with (all optional but one of `image` / `images` / `text`):
- `id`: sample id (default: the line number);
- `image` (one path) or `images` (a list: image pairs, video frames), relative to the manifest's folder;
- `text`: the user text of this record (overrides --prompt; a referring expression, a class name);
- `boxes`: pixel boxes [x1, y1, x2, y2] and `labels`: one label per box (SPair, Visual Genome, RefCOCO);
- `keypoints`: per image a list of [x, y] pixels (null when not visible), `bboxes`: per image [x1, y1, x2, y2];
- `masks`: a mask file path, or one per image (video frames); `video` and `frame` group single-image records;
- anything else is kept as-is in the sample's annotation.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.errors import CaptureError

MANIFEST_NAME = "manifest.jsonl"


def open_manifest(path: Path, limit: int | None = None) -> Dataset:
    """Records of the manifest at `path` (a .jsonl file, or a folder holding manifest.jsonl)."""
    if path.is_dir():
        path = path / MANIFEST_NAME
    if not path.is_file():
        raise CaptureError(f"manifest {path} not found (pass a .jsonl file or a folder with {MANIFEST_NAME})")
    base = path.parent
    records: list[Record] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            if limit is not None and len(records) >= limit:
                break
            try:
                entry = json.loads(line)
            except json.JSONDecodeError as error:
                raise CaptureError(f"{path}:{number}: not valid JSON ({error.msg})") from None
            record = _record(entry, base, f"{path}:{number}", default_id=str(number))
            if record.sample_id in seen:
                raise CaptureError(f"{path}:{number}: duplicate id {record.sample_id!r}")
            seen.add(record.sample_id)
            records.append(record)
    if not records:
        raise CaptureError(f"manifest {path} has no records")
    return Dataset("manifest", base, None, records)


def _record(entry: Any, base: Path, where: str, default_id: str) -> Record:
    if not isinstance(entry, dict):
        raise CaptureError(f"{where}: each line must be a JSON object")
    if "image" in entry and "images" in entry:
        raise CaptureError(f"{where}: give either 'image' or 'images', not both")
    images = entry.get("images", [entry["image"]] if "image" in entry else [])
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise CaptureError(f"{where}: 'images' must be a list of paths")
    text = entry.get("text")
    if text is not None and not isinstance(text, str):
        raise CaptureError(f"{where}: 'text' must be a string")
    if not images and text is None:
        raise CaptureError(f"{where}: a record needs 'image', 'images' or 'text'")
    annotation = {k: v for k, v in entry.items() if k not in ("id", "image", "images", "text", "boxes", "labels")}
    boxes, labels = entry.get("boxes"), entry.get("labels")
    if boxes is not None or labels is not None:
        annotation["objects"] = _objects(boxes, labels, where)
    if "masks" in entry:  # one path (a mask, or a folder of them) or one path per image
        masks = entry["masks"]
        if isinstance(masks, str):
            annotation["masks"] = str((base / masks).resolve())
        elif isinstance(masks, list) and all(isinstance(m, str) for m in masks):
            annotation["masks"] = [str((base / m).resolve()) for m in masks]
        else:
            raise CaptureError(f"{where}: 'masks' must be a path or a list of paths")
    sample_id = str(entry.get("id", default_id))
    return Record(sample_id, tuple((base / p) for p in images), annotation, text)


def _objects(boxes: Any, labels: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(boxes, list) or not isinstance(labels, list) or len(boxes) != len(labels):
        raise CaptureError(f"{where}: 'boxes' and 'labels' must be lists of the same length")
    objects = []
    for k, (box, label) in enumerate(zip(boxes, labels, strict=True)):
        if not (isinstance(box, list) and len(box) == 4 and all(isinstance(v, int | float) for v in box)):
            raise CaptureError(f"{where}: box {k} must be [x1, y1, x2, y2] in pixels, got {box!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise CaptureError(f"{where}: box {k} {box!r} has x2 < x1 or y2 < y1 (expected x1, y1, x2, y2)")
        objects.append({"id": k, "label": str(label), "box": [float(v) for v in box]})
    return objects
