"""BLINK read in its Hugging Face release layout.

The fixture follows the dataset card of BLINK-Benchmark/BLINK and the BLINK repository's loaders
(zeyofu/BLINK_Benchmark): one folder per task with <split>-00000-of-00001.parquet; columns idx
("val_<Task>_<n>"), question, sub_task, image_1 .. image_4 (Image features: struct {bytes, path}, null when
unused), choices (list of strings), answer ("(A)"), prompt, explanation.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.datasets.blink import TASKS
from capture.datasets.embedded import save_embedded_image
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture

IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
SCHEMA = pa.schema([("idx", pa.string()), ("question", pa.string()), ("sub_task", pa.string()),
                    *[(f"image_{k}", IMAGE) for k in range(1, 5)], ("choices", pa.list_(pa.string())),
                    ("answer", pa.string()), ("prompt", pa.string()), ("explanation", pa.string())])


def _encoded(seed, size, image_format):
    buffer = io.BytesIO()
    pixels = np.random.RandomState(seed).randint(0, 255, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=image_format)
    return buffer.getvalue()


def _row(idx, task, images, choices, answer):
    options = "\n".join(f"({chr(65 + k)}) {choice}" for k, choice in enumerate(choices))
    cells = [{"bytes": data, "path": f"{idx}_{k}.png"} for k, data in enumerate(images)] + [None] * (4 - len(images))
    return {"idx": idx, "question": f"Question of {idx}?", "sub_task": task.replace("_", " "),
            **{f"image_{k + 1}": cell for k, cell in enumerate(cells)}, "choices": choices, "answer": answer,
            "prompt": f"Question of {idx}?\nSelect from the following choices.\n{options}", "explanation": ""}


def _write(root, task, split, rows):
    (root / task).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), root / task / f"{split}-00000-of-00001.parquet")


@pytest.fixture
def blink_root(tmp_path):
    root = tmp_path / "BLINK"
    for seed, task in enumerate(TASKS):
        rows = [_row(f"val_{task}_1", task, [_encoded(seed, (40, 32), "PNG")], ["yes", "no"], "(B)")]
        if task == "Art_Style":
            images = [_encoded(100 + k, (32 + 8 * k, 32), "PNG" if k < 2 else "JPEG") for k in range(3)]
            rows = [_row("val_Art_Style_1", task, images, ["the second image", "the third image"], "(A)"),
                    _row("val_Art_Style_2", task, images[:2], ["the second image", "the third image"], "(B)")]
        _write(root, task, "val", rows)
    _write(root, "Counting", "test", [_row("test_Counting_1", "Counting", [_encoded(7, (24, 24), "PNG")],
                                           ["1", "2", "3", "4"], "")])
    return root


def test_records_and_decoded_images(blink_root, cache_home):
    dataset = open_dataset("blink", blink_root, None, None)
    assert dataset.split == "val" and len(dataset.records) == 15  # 14 tasks, Art_Style with two questions
    first = dataset.records[0]
    assert first.sample_id == "val_Art_Style_1"
    assert first.text == ("Question of val_Art_Style_1?\nSelect from the following choices.\n"
                          "(A) the second image\n(B) the third image")
    assert first.annotation == {"question_id": "val_Art_Style_1", "subset": "Art_Style",
                                "choices": ["the second image", "the third image"], "answer": "(A)"}
    assert [p.name for p in first.image_paths] == ["val_Art_Style_1_image_1.png", "val_Art_Style_1_image_2.png",
                                                   "val_Art_Style_1_image_3.jpg"]
    assert all(p.is_relative_to(cache_home / "datasets" / "blink-images") for p in first.image_paths)
    assert first.image_paths[2].read_bytes() == _encoded(102, (48, 32), "JPEG")  # bytes as released, not re-encoded
    assert Image.open(first.image_paths[1]).size == (40, 32)
    assert len(dataset.records[1].image_paths) == 2
    assert [r.annotation["subset"] for r in dataset.records[1:4]] == ["Art_Style", "Counting", "Forensic_Detection"]
    # a second read finds the images written and leaves them alone
    stamps = [p.stat().st_mtime_ns for p in first.image_paths]
    again = open_dataset("blink", blink_root, None, 1).records[0]
    assert again.image_paths == first.image_paths and [p.stat().st_mtime_ns for p in again.image_paths] == stamps


def test_tasks_test_split_and_limit(blink_root):
    counting = open_dataset("blink", blink_root, None, None, subset="counting,IQ_Test")
    assert [r.sample_id for r in counting.records] == ["val_Counting_1", "val_IQ_Test_1"]
    hidden = open_dataset("blink", blink_root, "test", None, subset="Counting").records
    assert [r.sample_id for r in hidden] == ["test_Counting_1"] and "answer" not in hidden[0].annotation
    assert len(open_dataset("blink", blink_root, None, 2).records) == 2
    with pytest.raises(CaptureError, match=r"unknown --subset 'Depth'"):
        open_dataset("blink", blink_root, None, None, subset="Depth")


def test_wrong_root_names_what_it_expected(blink_root, tmp_path):
    with pytest.raises(CaptureError, match=r"^BLINK parquet file .*/BLINK/Art_Style/test-00000-of-00001.parquet not found$"):
        open_dataset("blink", blink_root, "test", None)
    with pytest.raises(CaptureError, match=r"^--data-root .*/nowhere does not exist"):
        open_dataset("blink", tmp_path / "nowhere", None, None)
    (blink_root / "Jigsaw" / "val-00000-of-00001.parquet").write_bytes(b"not parquet")
    with pytest.raises(CaptureError, match=r"Jigsaw/val-00000-of-00001.parquet is not a readable parquet file"):
        open_dataset("blink", blink_root, None, None)


def test_capture(blink_root, tmp_path):
    out = tmp_path / "blink.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="blink", data_root=blink_root, out=out,
                                         limit=2, progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert list(ds.image_width.values[0][:3]) == [32, 40, 48]  # the three images of the first question
    assert json.loads(str(ds.annotation.values[1]))["answer"] == "(B)"


def test_undecodable_cells(tmp_path):
    # bytes PIL cannot read keep their recorded suffix (else .bin): capture then skips the sample as corrupt
    assert save_embedded_image({"bytes": b"garbage", "path": "a.JPG"}, tmp_path / "x", "cell").name == "x.jpg"
    assert save_embedded_image({"bytes": b"garbage", "path": None}, tmp_path / "y", "cell").read_bytes() == b"garbage"
    assert (tmp_path / "y.bin").is_file()
    with pytest.raises(CaptureError, match=r"^BLINK: row 3 image_2 holds no image bytes$"):
        save_embedded_image({"bytes": None, "path": "b.png"}, tmp_path / "z", "BLINK: row 3 image_2")
