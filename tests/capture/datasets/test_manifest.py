"""The manifest dataset: JSONL records with images, text, boxes and labels; bad lines are named."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.errors import CaptureError
from capture.options import CaptureOptions
from capture.run import run_capture


def _write(path, entries):
    path.write_text("".join((e if isinstance(e, str) else json.dumps(e)) + "\n" for e in entries))
    return path


@pytest.fixture
def manifest_dir(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "frames").mkdir()
    for name, size in (("a.jpg", (90, 60)), ("b.jpg", (60, 90)), ("frames/0.png", (64, 48)), ("frames/1.png", (64, 48))):
        Image.fromarray(rng.randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / name)
    _write(tmp_path / "manifest.jsonl", [
        {"id": "pair-1", "images": ["a.jpg", "b.jpg"], "keypoints": [[[10, 10]], [[20, 30]]], "category": "cat"},
        {"id": "davis-0", "images": ["frames/0.png", "frames/1.png"], "masks": "frames/masks.png"},
        {"id": "vg-1", "image": "a.jpg", "boxes": [[5, 5, 40, 30], [50, 10, 80, 50]], "labels": ["dog", "ball"]},
        {"id": "ref-1", "text": "the dog on the left"},
        "",
    ])
    return tmp_path


def test_records(manifest_dir):
    dataset = open_dataset("manifest", manifest_dir, None, None)
    assert [r.sample_id for r in dataset.records] == ["pair-1", "davis-0", "vg-1", "ref-1"]
    pair, video, boxes, text = dataset.records
    assert pair.image_paths == (manifest_dir / "a.jpg", manifest_dir / "b.jpg")
    assert pair.annotation == {"keypoints": [[[10, 10]], [[20, 30]]], "category": "cat"}
    assert video.annotation["masks"] == str((manifest_dir / "frames" / "masks.png").resolve())
    assert [o["label"] for o in boxes.annotation["objects"]] == ["dog", "ball"]
    assert boxes.annotation["objects"][1]["box"] == [50.0, 10.0, 80.0, 50.0]
    assert text.image_paths == () and text.text == "the dog on the left"
    assert open_dataset("manifest", manifest_dir / "manifest.jsonl", None, 2).records[1].sample_id == "davis-0"


@pytest.mark.parametrize("line, message", [
    ("{not json", r"manifest.jsonl:1: not valid JSON"),
    ('["a.jpg"]', r":1: each line must be a JSON object"),
    ('{"id": 1}', r":1: a record needs 'image', 'images' or 'text'"),
    ('{"image": "a.jpg", "images": ["b.jpg"]}', r"either 'image' or 'images'"),
    ('{"image": "a.jpg", "boxes": [[1, 2, 3, 4]], "labels": []}', r"same length"),
    ('{"image": "a.jpg", "boxes": [[5, 5, 1, 1]], "labels": ["x"]}', r"x2 < x1"),
    ('{"image": "a.jpg", "boxes": [[1, 2, 3]], "labels": ["x"]}', r"\[x1, y1, x2, y2\]"),
])
def test_bad_lines_are_named(tmp_path, line, message):
    path = _write(tmp_path / "manifest.jsonl", [line])
    with pytest.raises(CaptureError, match=message):
        open_dataset("manifest", path, None, None)


def test_missing_manifest_and_duplicates(tmp_path):
    with pytest.raises(CaptureError, match="not found"):
        open_dataset("manifest", tmp_path / "none.jsonl", None, None)
    path = _write(tmp_path / "m.jsonl", [{"id": "x", "text": "a"}, {"id": "x", "text": "b"}])
    with pytest.raises(CaptureError, match=r"m.jsonl:2: duplicate id 'x'"):
        open_dataset("manifest", path, None, None)


def test_capture_multi_image_pairs_and_text_records(manifest_dir, tmp_path):
    (manifest_dir / "frames" / "1.png").write_bytes(b"not a png")  # one corrupt frame: that sample is skipped
    out = tmp_path / "m.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-next", dataset="manifest", data_root=manifest_dir, out=out,
                                         progress=False))
    assert (summary.captured, summary.skipped) == (3, 1) and "corrupt image" in summary.skip_reasons[0]
    ds = store.reader.open(out)
    pair = ds.isel(sample=0)
    n = int(pair.n_tokens)
    image_index = pair.image_index.values[:n]
    assert set(np.unique(image_index)) == {-1, 0, 1}
    assert list(pair.image_height.values) == [60, 90] and list(pair.image_width.values) == [90, 60]
    assert json.loads(str(pair.annotation.values))["category"] == "cat"
    text = ds.isel(sample=3)
    assert (text.image_index.values[: int(text.n_tokens)] == -1).all()
    assert "the dog on the left" in str(text.prompt.values)
