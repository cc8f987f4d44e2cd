"""MME read as released.

The fixture follows the MME release (MME_Benchmark_release_version/MME_Benchmark/, from the MME repository,
BradyFU/Awesome-Multimodal-Large-Language-Models, Evaluation branch): one folder per subtask; artwork,
celebrity, landmark, posters and scene hold images/ and questions_answers_YN/<stem>.txt, the nine others
<stem>.txt beside each image; each question file has two lines "<question>\\t<Yes|No>". The eval tool's
per-subtask file (eval_tool/Your_Results/<task>.txt: "<image>\\t<question>\\t<answer>[\\t<prediction>]") is the
alternative question source.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.datasets.mme import SUBTASKS
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture

SPLIT_LAYOUT = ("artwork", "celebrity", "landmark", "posters", "scene")


def _image(path, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.RandomState(seed).randint(0, 255, (40, 56, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def _questions(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{question}\t{answer}\n" for question, answer in lines))


@pytest.fixture
def mme_root(tmp_path):
    root = tmp_path / "MME_Benchmark_release_version"
    base = root / "MME_Benchmark"
    for seed, task in enumerate(SUBTASKS):
        stems = ["000000006040", "000000000139"] if task == "count" else ["0001"]
        for k, stem in enumerate(stems):
            suffix = ".png" if task == "code_reasoning" else ".jpg"
            lines = [(f"Is this {task} question {k}a? Please answer yes or no.", "Yes"),
                     (f"Is this {task} question {k}b? Please answer yes or no.", "No")]
            if task in SPLIT_LAYOUT:
                _image(base / task / "images" / f"{stem}{suffix}", seed)
                _questions(base / task / "questions_answers_YN" / f"{stem}.txt", lines)
            else:
                _image(base / task / f"{stem}{suffix}", seed)
                _questions(base / task / f"{stem}.txt", lines)
    return root


def test_records_of_all_subtasks(mme_root):
    dataset = open_dataset("mme", mme_root, None, None)
    base = mme_root / "MME_Benchmark"
    assert len(dataset.records) == 30  # 14 subtasks x 1 image x 2 questions, and a second image in count
    assert [r.annotation["subset"] for r in dataset.records[::2]][:4] == ["existence", "count", "count", "position"]
    first = dataset.records[0]
    assert first.sample_id == "existence/0001/0"
    assert first.image_paths == (base / "existence" / "0001.jpg",)
    assert first.text == "Is this existence question 0a? Please answer yes or no."
    assert first.annotation == {"question_id": "existence/0001/0", "answer": "yes", "subset": "existence",
                                "image_id": "0001", "file_name": "existence/0001.jpg"}
    assert dataset.records[1].annotation["answer"] == "no"
    # count: images in name order, each image's two questions together (accuracy+ pairs them)
    assert [r.sample_id for r in dataset.records[2:6]] == ["count/000000000139/0", "count/000000000139/1",
                                                            "count/000000006040/0", "count/000000006040/1"]
    artwork = next(r for r in dataset.records if r.annotation["subset"] == "artwork")
    assert artwork.image_paths == (base / "artwork" / "images" / "0001.jpg",)
    assert artwork.annotation["file_name"] == "artwork/images/0001.jpg"
    code = next(r for r in dataset.records if r.annotation["subset"] == "code_reasoning")
    assert code.image_paths == (base / "code_reasoning" / "0001.png",)
    assert dataset.records[-1].annotation["subset"] == "code_reasoning"


def test_subtasks_groups_and_limit(mme_root):
    cognition = open_dataset("mme", mme_root, None, None, subset="cognition")
    assert [r.annotation["subset"] for r in cognition.records[::2]] == ["commonsense_reasoning", "numerical_calculation",
                                                                        "text_translation", "code_reasoning"]
    assert len(open_dataset("mme", mme_root, None, None, subset="ocr,Count").records) == 6
    assert [r.sample_id for r in open_dataset("mme", mme_root, None, 3).records] == [
        "existence/0001/0", "existence/0001/1", "count/000000000139/0"]
    with pytest.raises(CaptureError, match=r"unknown --subset 'colour'"):
        open_dataset("mme", mme_root, None, None, subset="colour")


def test_the_eval_tools_per_subtask_file(mme_root):
    base = mme_root / "MME_Benchmark"
    for path in (base / "color").glob("*.txt"):
        path.unlink()
    (base / "color.txt").write_text("0001.jpg\tIs the car red? Please answer yes or no.\tYes\tYes\n"
                                    "0001.jpg\tIs the car blue? Please answer yes or no.\tNo\tYes\n")
    color = open_dataset("mme", mme_root, None, None, subset="color").records
    assert [(r.text, r.annotation["answer"]) for r in color] == [("Is the car red? Please answer yes or no.", "yes"),
                                                                  ("Is the car blue? Please answer yes or no.", "no")]
    assert color[1].image_paths == (base / "color" / "0001.jpg",) and color[1].sample_id == "color/0001/1"


def test_wrong_root_names_what_it_expected(mme_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CaptureError, match=r"^MME subtask folder .*/empty/existence/ not found$"):
        open_dataset("mme", empty, None, None)
    (mme_root / "MME_Benchmark" / "scene").rename(mme_root / "scenes")
    with pytest.raises(CaptureError, match=r"^MME subtask folder .*/MME_Benchmark/scene/ not found$"):
        open_dataset("mme", mme_root, None, None)
    for path in (mme_root / "MME_Benchmark" / "color").glob("*.txt"):
        path.unlink()
    with pytest.raises(CaptureError, match=r"MME subtask color: no question files in .*/color/"):
        open_dataset("mme", mme_root, None, None, subset="color")


def test_malformed_question_lines_are_named(mme_root):
    path = mme_root / "MME_Benchmark" / "OCR" / "0001.txt"
    path.write_text("Is the word in the logo 'angie'? Please answer yes or no.\tMaybe\n")
    with pytest.raises(CaptureError, match=r"OCR/0001.txt:1 has answer 'Maybe'"):
        open_dataset("mme", mme_root, None, None)
    path.write_text("a question without its answer\n")
    with pytest.raises(CaptureError, match=r"OCR/0001.txt:1 has 1 tab-separated fields, expected 2"):
        open_dataset("mme", mme_root, None, None)


def test_capture(mme_root, tmp_path):
    out = tmp_path / "mme.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="mme", data_root=mme_root, out=out, limit=2,
                                         progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert json.loads(str(ds.annotation.values[1]))["answer"] == "no"
    assert "question 0b? Please answer yes or no." in str(ds.prompt.values[1])
