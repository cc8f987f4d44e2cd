"""Dataset adapters: synthetic-coco is deterministic COCO; coco and folder read what is on disk."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from capture.datasets import ImageLoadError, load_image, open_dataset
from capture.datasets.synthetic_coco import generate
from capture.errors import CaptureError


def _tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_synthetic_coco_is_deterministic_real_coco(tmp_path):
    first, second = generate(tmp_path / "a", n_images=5), generate(tmp_path / "b", n_images=5)
    assert _tree_digest(first) == _tree_digest(second)
    coco = COCO(str(first / "annotations" / "instances_val2017.json"))
    assert len(coco.getImgIds()) == 5 and {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"circle"}
    annotation = coco.loadAnns(coco.getAnnIds(imgIds=1))[0]
    mask = coco.annToMask(annotation)
    info = coco.loadImgs(1)[0]
    assert mask.shape == (info["height"], info["width"]) and mask.sum() > 100
    # the mask marks the shape's colour in the JPEG
    pixels = np.asarray(Image.open(first / "val2017" / info["file_name"]), dtype=float)
    inside, outside = pixels[mask == 1].mean(axis=0), pixels[mask == 0].std(axis=0)
    assert outside.mean() > 5 and np.abs(pixels[mask == 1] - inside).mean() < 20


def test_coco_reader(synthetic_root):
    dataset = open_dataset("coco", synthetic_root, "val2017", 3)
    assert [r.sample_id for r in dataset.records] == ["1", "2", "3"]
    record = dataset.records[0]
    assert record.image_paths[0].is_file() and len(record.annotation["captions"]) == 2
    assert record.annotation["categories"] and json.dumps(record.annotation)
    with pytest.raises(CaptureError, match="instances_train2017.json"):
        open_dataset("coco", synthetic_root, "train2017", None)


def test_folder_reader(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.new("RGB", (20, 10)).save(tmp_path / "sub" / "b.png")
    Image.new("RGB", (20, 10)).save(tmp_path / "a.jpg")
    (tmp_path / "notes.txt").write_text("x")
    dataset = open_dataset("folder", tmp_path, None, None)
    assert [r.sample_id for r in dataset.records] == ["a.jpg", "sub/b.png"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(CaptureError, match="no image files"):
        open_dataset("folder", tmp_path / "empty", None, None)


def test_load_image_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="missing image"):
        load_image(tmp_path / "none.jpg")
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ImageLoadError, match="corrupt image"):
        load_image(tmp_path / "bad.jpg")
