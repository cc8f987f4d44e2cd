"""CV-Bench read in its Hugging Face release layout.

The fixture follows the dataset card of nyu-visionx/CV-Bench: test_2d.jsonl / test_3d.jsonl with the images
under img/ (field `filename`, e.g. img/2D/count/ade20k_10.png), or test_2d.parquet / test_3d.parquet with the
image embedded (an Image feature, struct {bytes, path}); fields idx, type, task, question, choices, answer
("(C)"), prompt, filename, source, source_dataset, source_filename, target_class, target_size, bbox.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

import store.reader
from capture.datasets import open_dataset
from capture.datasets.embedded import relative_name
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture


def _row(idx, kind, task, filename, source, choices, answer):
    options = "\n".join(f"({chr(65 + k)}) {choice}" for k, choice in enumerate(choices))
    question = f"Question {idx} about {task.lower()}?"
    return {"idx": idx, "type": kind, "task": task, "question": question, "choices": choices, "answer": answer,
            "prompt": f"{question} Select from the following choices.\n{options}", "filename": filename,
            "source": source, "source_dataset": f"{source} Validation Set", "source_filename": f"{idx}.jpg",
            "target_class": "person" if source == "COCO" else None, "target_size": None,
            "bbox": [[1.0, 2.0, 30.0, 40.0]] if source == "Omni3D" else None}


ROWS = {
    "2D": [_row(0, "2D", "Count", "img/2D/count/ade20k_10.png", "ADE20K", ["3", "2", "1", "0"], "(C)"),
           _row(1, "2D", "Relation", "img/2D/relation/coco_5.png", "COCO", ["left", "right"], "(A)")],
    "3D": [_row(2, "3D", "Depth", "img/3D/depth/omni3d_3.png", "Omni3D", ["lamp", "chair"], "(B)"),
           _row(3, "3D", "Distance", "img/3D/distance/omni3d_7.png", "Omni3D", ["table", "sofa"], "(A)")],
}


def _png(seed):
    buffer = io.BytesIO()
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (32, 48, 3), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def cvbench_root(tmp_path):
    for kind, rows in ROWS.items():
        (tmp_path / f"test_{kind.lower()}.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        for row in rows:
            (tmp_path / row["filename"]).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / row["filename"]).write_bytes(_png(row["idx"]))
    return tmp_path


def test_records_from_jsonl_and_img(cvbench_root):
    dataset = open_dataset("cvbench", cvbench_root, None, None)
    assert dataset.split == "test"
    assert [r.sample_id for r in dataset.records] == ["2D/0", "2D/1", "3D/2", "3D/3"]
    first = dataset.records[0]
    assert first.image_paths == (cvbench_root / "img/2D/count/ade20k_10.png",)
    assert first.text == "Question 0 about count? Select from the following choices.\n(A) 3\n(B) 2\n(C) 1\n(D) 0"
    assert first.annotation == {"question_id": 0, "subset": "Count", "source": "ADE20K", "choices": ["3", "2", "1", "0"],
                                "answer": "(C)", "file_name": "img/2D/count/ade20k_10.png"}
    assert [(r.annotation["subset"], r.annotation["source"]) for r in dataset.records[1:]] == [
        ("Relation", "COCO"), ("Depth", "Omni3D"), ("Distance", "Omni3D")]


def test_records_from_parquet_with_embedded_images(cvbench_root, cache_home):
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    for kind, rows in ROWS.items():
        (cvbench_root / f"test_{kind.lower()}.jsonl").unlink()
        table = pa.Table.from_pylist([{**row, "image": {"bytes": _png(row["idx"]), "path": None}} for row in rows])
        pq.write_table(table.cast(table.schema.set(table.schema.get_field_index("image"), pa.field("image", image))),
                       cvbench_root / f"test_{kind.lower()}.parquet")
    records = open_dataset("cvbench", cvbench_root, None, None).records
    depth = records[2]
    assert depth.image_paths[0].is_relative_to(cache_home / "datasets" / "cvbench-images")
    assert depth.image_paths[0].as_posix().endswith("img/3D/depth/omni3d_3.png")
    assert depth.image_paths[0].read_bytes() == _png(2)
    assert depth.annotation == {"question_id": 2, "subset": "Depth", "source": "Omni3D", "choices": ["lamp", "chair"],
                                "answer": "(B)", "file_name": "img/3D/depth/omni3d_3.png"}


def test_tasks_and_groups(cvbench_root):
    assert [r.sample_id for r in open_dataset("cvbench", cvbench_root, None, None, subset="3d").records] == ["3D/2", "3D/3"]
    assert [r.sample_id for r in open_dataset("cvbench", cvbench_root, None, None, subset="Distance,count").records] == [
        "2D/0", "3D/3"]
    (cvbench_root / "test_3d.jsonl").unlink()  # 2D alone needs no 3D file
    assert len(open_dataset("cvbench", cvbench_root, "test", None, subset="2D").records) == 2
    with pytest.raises(CaptureError, match=r"unknown --subset 'Size'"):
        open_dataset("cvbench", cvbench_root, None, None, subset="Size")


def test_wrong_root_names_what_it_expected(cvbench_root, tmp_path):
    (cvbench_root / "test_3d.jsonl").unlink()
    with pytest.raises(CaptureError, match=r"^CV-Bench annotation file .*/test_3d.jsonl not found \(nor a .parquet\)$"):
        open_dataset("cvbench", cvbench_root, None, None)
    (cvbench_root / "test_2d.jsonl").write_text(json.dumps({"idx": 9, "task": "Count"}) + "\n")
    with pytest.raises(CaptureError, match=r"test_2d.jsonl:1 has no 'prompt'"):
        open_dataset("cvbench", cvbench_root, None, None, subset="2D")
    with pytest.raises(CaptureError, match=r"has one split, test"):
        open_dataset("cvbench", cvbench_root, "val", None)


def test_capture(cvbench_root, tmp_path):
    out = tmp_path / "cvbench.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="cvbench", data_root=cvbench_root, out=out,
                                         limit=2, progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert json.loads(str(ds.annotation.values[1]))["source"] == "COCO"
    assert "(A) left\n(B) right" in str(ds.prompt.values[1])


def test_recorded_names_stay_inside_the_cache():
    assert relative_name("img/2D/count/ade20k_10.png") == Path("img/2D/count/ade20k_10.png")
    assert relative_name("../../etc/x.png") == Path("etc/x.png")
    assert relative_name("/abs/./img.png") == Path("abs/img.png")
    assert relative_name("img\\3D\\a.png") == Path("img/3D/a.png")
