"""POPE read as its repository releases it.

The fixture follows the POPE repository (github.com/AoiDragon/POPE, output/coco/coco_pope_<setting>.json): JSON
lines with question_id, image (a COCO val2014 file name), image_id (recent releases only), text ("Is there a
<object> in the image?") and label (yes / no); the images in COCO's val2014/ folder.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.datasets.pope import question_object
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture

IMAGE_A, IMAGE_B = "COCO_val2014_000000548882.jpg", "COCO_val2014_000000008211.jpg"


def _lines(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(entry) + "\n" for entry in entries))


@pytest.fixture
def pope_root(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "val2014").mkdir()
    for name, (w, h) in ((IMAGE_A, (64, 48)), (IMAGE_B, (48, 64))):
        Image.fromarray(rng.randint(0, 255, (h, w, 3), dtype=np.uint8)).save(tmp_path / "val2014" / name)
    questions = tmp_path / "output" / "coco"
    _lines(questions / "coco_pope_random.json", [
        {"question_id": 0, "image": IMAGE_A, "image_id": 548882, "text": "Is there a dining table in the image?", "label": "yes"},
        {"question_id": 1, "image": IMAGE_A, "image_id": 548882, "text": "Is there a giraffe in the image?", "label": "no"},
        {"question_id": 2, "image": IMAGE_B, "image_id": 8211, "text": "Is there a motorcycle in the image?", "label": "yes"},
    ])
    _lines(questions / "coco_pope_popular.json", [
        {"question_id": 0, "image": IMAGE_B, "image_id": 8211, "text": "Is there a person in the image?", "label": "no"},
    ])
    # an older release: no image_id field (the id is in the file name)
    _lines(questions / "coco_pope_adversarial.json", [
        {"question_id": 0, "image": IMAGE_A, "text": "Is there an oven in the image?", "label": "no"},
        {"question_id": 1, "image": IMAGE_B, "text": "Is there a car in the image?", "label": "yes"},
    ])
    return tmp_path


def test_records_of_all_three_settings(pope_root):
    dataset = open_dataset("pope", pope_root, None, None)
    assert [r.sample_id for r in dataset.records] == ["random/0", "random/1", "random/2", "popular/0",
                                                      "adversarial/0", "adversarial/1"]
    first = dataset.records[0]
    assert first.image_paths == (pope_root / "val2014" / IMAGE_A,)
    assert first.text == "Is there a dining table in the image?"
    assert first.annotation == {"question_id": 0, "answer": "yes", "label": "dining table", "subset": "random",
                                "file_name": f"val2014/{IMAGE_A}", "image_id": 548882}
    assert dataset.records[3].annotation == {"question_id": 0, "answer": "no", "label": "person", "subset": "popular",
                                             "file_name": f"val2014/{IMAGE_B}", "image_id": 8211}
    oven = dataset.records[4]
    assert (oven.annotation["label"], oven.annotation["image_id"], oven.annotation["answer"]) == ("oven", 548882, "no")
    assert [r.annotation["answer"] for r in dataset.records] == ["yes", "no", "yes", "no", "no", "yes"]


def test_subsets_and_limit(pope_root):
    chosen = open_dataset("pope", pope_root, None, None, subset="adversarial,Popular")
    assert [r.sample_id for r in chosen.records] == ["popular/0", "adversarial/0", "adversarial/1"]
    assert [r.sample_id for r in open_dataset("pope", pope_root, None, 2).records] == ["random/0", "random/1"]
    with pytest.raises(CaptureError, match=r"unknown --subset 'hard' for --dataset pope \(choose from random, popular"):
        open_dataset("pope", pope_root, None, None, subset="hard")


def test_question_files_at_the_root_are_found_too(pope_root):
    for path in (pope_root / "output" / "coco").iterdir():
        path.rename(pope_root / path.name)
    assert len(open_dataset("pope", pope_root, None, None).records) == 6


@pytest.mark.parametrize("question, expected", [
    ("Is there a dining table in the image?", "dining table"),
    ("Is there an apple in the image?", "apple"),
    ("is there a hair drier in the image ?", "hair drier"),
    ("What colour is the car?", None),
])
def test_question_object(question, expected):
    assert question_object(question) == expected


def test_wrong_root_names_what_it_expected(tmp_path, pope_root):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptureError, match=r"^POPE question file .*/empty/coco_pope_random.json not found "
                                           r"\(nor in output/coco/ or coco/\)$"):
        open_dataset("pope", empty, None, None)
    with pytest.raises(CaptureError, match=r"--dataset pope has no splits \(got --split 'val2014'\)"):
        open_dataset("pope", pope_root, "val2014", None)
    with pytest.raises(CaptureError, match=r"^--data-root .*/missing does not exist"):
        open_dataset("pope", tmp_path / "missing", None, None)
    (pope_root / "val2014").rename(pope_root / "images")
    with pytest.raises(CaptureError, match=r"POPE COCO val2014 image folder .*/val2014/ not found"):
        open_dataset("pope", pope_root, None, None)


def test_malformed_lines_are_named(pope_root):
    path = pope_root / "output" / "coco" / "coco_pope_popular.json"
    _lines(path, [{"question_id": 0, "image": IMAGE_B, "text": "Is there a person in the image?", "label": "maybe"}])
    with pytest.raises(CaptureError, match=r"coco_pope_popular.json:1 has label 'maybe'"):
        open_dataset("pope", pope_root, None, None)
    _lines(path, [{"question_id": 0, "image": IMAGE_B, "text": "How many people are there?", "label": "no"}])
    with pytest.raises(CaptureError, match=r"coco_pope_popular.json:1 asks 'How many people"):
        open_dataset("pope", pope_root, None, None)


def test_capture(pope_root, tmp_path):
    out = tmp_path / "pope.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="pope", data_root=pope_root, out=out, limit=2,
                                         progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert list(ds.sample_id.values) == ["random/0", "random/1"]
    assert json.loads(str(ds.annotation.values[1]))["label"] == "giraffe"
    assert "Is there a giraffe in the image?" in str(ds.prompt.values[1])
