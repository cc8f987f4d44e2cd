"""synthetic-correspondence: deterministic pairs with matching keypoints, and videos with moving masks."""

from __future__ import annotations

import hashlib

import numpy as np
from PIL import Image

from capture.datasets import open_dataset
from capture.datasets.synthetic_correspondence import N_FRAMES, N_PAIRS, N_VIDEOS, generate


def _digest(root):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


def test_generated_pairs_and_videos(tmp_path):
    root = generate(tmp_path / "a")
    assert _digest(root) == _digest(generate(tmp_path / "b"))
    records = open_dataset("synthetic-correspondence", root, None, None).records
    pairs = [r for r in records if len(r.image_paths) == 2]
    choices = [r for r in records if "answer" in r.annotation]
    assert len(choices) == N_PAIRS and all(len(r.image_paths) == 3 for r in choices)
    assert {r.annotation["answer"] for r in choices} == {1, 2}
    frames = [r for r in records if "video" in r.annotation]
    assert len(pairs) == N_PAIRS and len(frames) == N_VIDEOS * N_FRAMES
    for pair in pairs:
        source, target = pair.annotation["keypoints"]
        assert len(source) == len(target) >= 4
        for points, box, path in zip((source, target), pair.annotation["bboxes"], pair.image_paths, strict=True):
            width, height = Image.open(path).size
            points = np.array(points)
            assert (points[:, 0] >= box[0] - 1e-6).all() and (points[:, 0] <= box[2] + 1e-6).all()
            assert 0 <= box[0] < box[2] <= width and 0 <= box[1] < box[3] <= height
    centres = []
    for frame in sorted((r for r in frames if r.annotation["video"] == "video0"), key=lambda r: r.annotation["frame"]):
        mask = np.asarray(Image.open(frame.annotation["masks"]))
        assert set(np.unique(mask)) == {0, 1}
        centres.append(np.argwhere(mask)[:, 1].mean())
    assert (np.diff(centres) > 0).all()  # the shape moves right
