"""GQA read as released.

The fixture follows GQA's download page (cs.stanford.edu/people/dorarad/gqa/download.html) and its question
format description: questions1.2/<split>_balanced_questions.json, one object keyed by question id whose values
hold imageId, question, answer, fullAnswer, isBalanced, types {structural, semantic, detailed}, groups,
semantic, semanticStr, annotations; the images as images/<imageId>.jpg.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture


def _question(image_id, question, answer, full_answer, structural):
    return {"semantic": [{"operation": "select", "dependencies": [], "argument": "table (1)"}], "entailed": [],
            "equivalent": [], "question": question, "imageId": image_id, "isBalanced": True,
            "groups": {"global": None, "local": "13-table_color"}, "answer": answer, "semanticStr": "select: table (1)",
            "annotations": {"answer": {}, "question": {"2": "1"}, "fullAnswer": {}}, "fullAnswer": full_answer,
            "types": {"detailed": "existRelS", "semantic": "rel", "structural": structural}}


@pytest.fixture
def gqa_root(tmp_path):
    rng = np.random.RandomState(0)
    (tmp_path / "images").mkdir()
    for name in ("n161313", "2354786"):
        Image.fromarray(rng.randint(0, 255, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{name}.jpg")
    (tmp_path / "questions1.2").mkdir()
    testdev = {
        "20968379": _question("n161313", "Is the table made of wood?", "yes", "Yes, the table is made of wood.", "verify"),
        "201640614": _question("n161313", "What color is the chair?", "brown", "The chair is brown.", "query"),
        "20968380": _question("2354786", "Who is wearing the hat?", "man", "The man is wearing the hat.", "query"),
    }
    (tmp_path / "questions1.2" / "testdev_balanced_questions.json").write_text(json.dumps(testdev))
    val = {"05451380": _question("2354786", "Is the sky blue?", "no", "No, the sky is gray.", "verify")}
    (tmp_path / "questions1.2" / "val_balanced_questions.json").write_text(json.dumps(val))
    return tmp_path


def test_records_of_testdev_by_default(gqa_root):
    dataset = open_dataset("gqa", gqa_root, None, None)
    assert dataset.split == "testdev"
    assert [r.sample_id for r in dataset.records] == ["20968379", "201640614", "20968380"]
    second = dataset.records[1]
    assert second.image_paths == (gqa_root / "images" / "n161313.jpg",)
    assert second.text == "What color is the chair?"
    assert second.annotation == {"question_id": "201640614", "image_id": "n161313", "file_name": "images/n161313.jpg",
                                 "answer": "brown"}
    assert dataset.records[2].annotation["answer"] == "man"


def test_val_split_and_limit(gqa_root):
    val = open_dataset("gqa", gqa_root, "val", None)
    assert [(r.sample_id, r.text, r.annotation["answer"]) for r in val.records] == [("05451380", "Is the sky blue?", "no")]
    assert len(open_dataset("gqa", gqa_root, "testdev", 2).records) == 2
    with pytest.raises(CaptureError, match=r"--dataset gqa has splits testdev, val, train \(got --split 'test'\)"):
        open_dataset("gqa", gqa_root, "test", None)


def test_wrong_root_names_what_it_expected(gqa_root, tmp_path):
    with pytest.raises(CaptureError, match=r"^GQA question file .*/questions1.2/train_balanced_questions.json not found$"):
        open_dataset("gqa", gqa_root, "train", None)
    (gqa_root / "images").rename(gqa_root / "allImages")
    with pytest.raises(CaptureError, match=r"^GQA image folder .*/images/ not found$"):
        open_dataset("gqa", gqa_root, None, None)
    (gqa_root / "questions1.2" / "testdev_balanced_questions.json").write_text('{"1": {"question": "Why?"}}')
    (gqa_root / "allImages").rename(gqa_root / "images")
    with pytest.raises(CaptureError, match=r"testdev_balanced_questions.json question 1 has no 'imageId'"):
        open_dataset("gqa", gqa_root, None, None)


def test_capture(gqa_root, tmp_path):
    out = tmp_path / "gqa.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="gqa", data_root=gqa_root, out=out, limit=2,
                                         progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert json.loads(str(ds.annotation.values[0]))["answer"] == "yes"
    assert "Is the table made of wood?" in str(ds.prompt.values[0])
