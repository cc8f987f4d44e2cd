"""refcoco: referring expressions from a non-pickle refs export plus instances.json, one record per expression.

The fixture follows the refer toolkit's layout (github.com/lichengunc/refer: data/refcoco/instances.json in COCO
format, the refs list of {ref_id, image_id, ann_id, split, sentences: [{tokens, raw, sent_id, sent}], sent_ids,
category_id, file_name}, images in data/images/mscoco/images/train2014/), with the refs saved as JSON, JSON lines
and parquet instead of the toolkit's pickle (the Hugging Face export jxu124/refcoco has these columns in
data/<split>-*.parquet). Segmentations are a COCO polygon and an uncompressed RLE.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from analyses.ground_truth import object_masks
from capture.datasets import open_dataset
from capture.errors import CaptureError

DOG_POLYGON = [[1, 0, 4, 0, 4, 2, 1, 2]]  # pixels x 1..3, y 0..1 of the 8 x 6 image 9
CAT_RLE = {"size": [4, 5], "counts": [5, 2, 13]}  # column-major runs: pixels (row 1, col 1) and (row 2, col 1) of image 25
INSTANCES = {
    "images": [{"id": 9, "file_name": "COCO_train2014_000000000009.jpg", "width": 8, "height": 6},
               {"id": 25, "file_name": "COCO_train2014_000000000025.jpg", "width": 5, "height": 4}],
    "annotations": [
        {"id": 101, "image_id": 9, "category_id": 18, "bbox": [1, 0, 3, 2], "area": 6, "iscrowd": 0,
         "segmentation": DOG_POLYGON},
        {"id": 102, "image_id": 25, "category_id": 17, "bbox": [1, 1, 1, 2], "area": 2, "iscrowd": 1,
         "segmentation": CAT_RLE},
        {"id": 103, "image_id": 9, "category_id": 1, "bbox": [5, 1, 2, 4], "area": 8, "iscrowd": 0,
         "segmentation": [[5, 1, 7, 1, 7, 5, 5, 5]]},
    ],
    "categories": [{"id": 1, "name": "person", "supercategory": "person"},
                   {"id": 17, "name": "cat", "supercategory": "animal"},
                   {"id": 18, "name": "dog", "supercategory": "animal"}],
}


def _sentence(sent_id, raw):
    return {"tokens": raw.lower().strip(".").split(), "raw": raw, "sent_id": sent_id, "sent": raw.lower().strip(".")}


REFS = [
    {"ref_id": 0, "image_id": 9, "ann_id": 101, "split": "val", "sentences": [_sentence(0, "The dog on the left.")],
     "sent_ids": [0], "category_id": 18, "file_name": "COCO_train2014_000000000009_101.jpg"},
    {"ref_id": 1, "image_id": 9, "ann_id": 103, "split": "train", "sentences": [_sentence(1, "man")],
     "sent_ids": [1], "category_id": 1, "file_name": "COCO_train2014_000000000009_103.jpg"},
    {"ref_id": 2, "image_id": 25, "ann_id": 102, "split": "val",
     "sentences": [_sentence(2, "Grey cat"), _sentence(3, "the cat")], "sent_ids": [2, 3], "category_id": 17,
     "file_name": "COCO_train2014_000000000025_102.jpg"},
]


@pytest.fixture
def refer_root(tmp_path, write_image):
    data = tmp_path / "refer/data"
    root = data / "refcoco"
    root.mkdir(parents=True)
    for image in INSTANCES["images"]:
        write_image(data / "images/mscoco/images/train2014" / image["file_name"], image["width"], image["height"])
    (root / "instances.json").write_text(json.dumps(INSTANCES))
    (root / "refs(unc).json").write_text(json.dumps(REFS))
    return root


def test_expressions_become_records_with_the_referred_object(refer_root):
    dataset = open_dataset("refcoco", refer_root, None, None)
    assert dataset.split == "val"
    assert [r.sample_id for r in dataset.records] == ["0/0", "2/2", "2/3"]
    assert [r.text for r in dataset.records] == ["The dog on the left.", "Grey cat", "the cat"]
    first = dataset.records[0]
    assert first.image_paths == (refer_root / "../images/mscoco/images/train2014/COCO_train2014_000000000009.jpg",)
    assert first.annotation == {
        "image_id": 9, "file_name": "../images/mscoco/images/train2014/COCO_train2014_000000000009.jpg",
        "object": {"id": 101, "label": "dog", "box": [1, 0, 4, 2], "iscrowd": 0, "segmentation": DOG_POLYGON},
        "ref_id": 0, "sent_id": 0,
    }
    assert dataset.records[2].annotation["object"]["segmentation"] == CAT_RLE
    train = open_dataset("refcoco", refer_root, "train", None)
    assert [(r.sample_id, r.text, r.annotation["object"]["label"]) for r in train.records] == [("1/1", "man", "person")]


def test_json_lines_and_parquet_exports_read_alike(refer_root):
    expected = open_dataset("refcoco", refer_root, None, None).records
    (refer_root / "refs(unc).json").unlink()
    (refer_root / "refs(unc).jsonl").write_text("".join(json.dumps(ref) + "\n" for ref in REFS))
    assert open_dataset("refcoco", refer_root, None, None).records == expected
    (refer_root / "refs(unc).jsonl").unlink()
    (refer_root / "data").mkdir()  # the Hugging Face layout: one parquet file per split
    for split in ("train", "val"):
        rows = [ref for ref in REFS if ref["split"] == split]
        pq.write_table(pa.Table.from_pylist(rows), refer_root / f"data/{split}-00000-of-00001.parquet")
    assert open_dataset("refcoco", refer_root, None, None).records == expected


def test_several_exports_need_a_partition(refer_root):
    (refer_root / "refs(google).json").write_text(json.dumps(REFS[:1]))
    with pytest.raises(CaptureError, match=r"several refs exports .*\(google, unc\): choose one with --subset"):
        open_dataset("refcoco", refer_root, None, None)
    assert [r.sample_id for r in open_dataset("refcoco", refer_root, None, None, subset="google").records] == ["0/0"]
    assert len(open_dataset("refcoco", refer_root, None, None, subset="unc").records) == 3
    with pytest.raises(CaptureError, match=r"no refs\(umd\) export"):
        open_dataset("refcoco", refer_root, None, None, subset="umd")


class _Trap:
    """Unpickling this opens (creates) a file: what loading a hostile pickle could do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def test_a_pickle_is_refused_unread(refer_root, tmp_path):
    (refer_root / "refs(unc).json").unlink()
    marker = tmp_path / "unpickled"
    (refer_root / "refs(unc).p").write_bytes(pickle.dumps(_Trap(marker)))
    with pytest.raises(CaptureError, match=r"refs\(unc\).p is a pickle, which is never loaded here") as error:
        open_dataset("refcoco", refer_root, None, None)
    assert "\n" not in str(error.value) and "parquet" in str(error.value)
    (refer_root / "refs(google).json").write_text(json.dumps(REFS))  # another partition as JSON: unc still refused
    with pytest.raises(CaptureError, match=r"refs\(unc\).p is a pickle"):
        open_dataset("refcoco", refer_root, None, None, subset="unc")
    assert not marker.exists()


def test_wrong_root_and_missing_images_are_one_line(refer_root, tmp_path):
    with pytest.raises(CaptureError, match="instances.json") as error:
        open_dataset("refcoco", tmp_path / "elsewhere", None, None)
    assert "\n" not in str(error.value)
    (refer_root.parent / "images").rename(tmp_path / "moved")
    with pytest.raises(CaptureError, match="expected the COCO train2014 images") as error:
        open_dataset("refcoco", refer_root, None, None)
    assert "\n" not in str(error.value)
    (tmp_path / "moved").rename(refer_root.parent / "images")
    with pytest.raises(CaptureError, match=r"no refs of --split 'testA' .* \(splits: train, val\)"):
        open_dataset("refcoco", refer_root, "testA", None)


def test_a_tiny_model_captures_expressions_and_their_masks_decode(refer_root, tmp_path, capture_two):
    ds = capture_two("refcoco", refer_root, tmp_path / "refcoco.zarr")
    assert "The dog on the left." in str(ds.prompt.values[0]) and "Grey cat" in str(ds.prompt.values[1])
    dog = np.zeros((6, 8), bool)
    dog[0:2, 1:4] = True
    assert object_masks(ds, 0)["dog"].tolist() == dog.tolist()
    cat = np.zeros((4, 5), bool)
    cat[1:3, 1] = True
    assert object_masks(ds, 1)["cat"].tolist() == cat.tolist()
