"""spair: SPair-71k pair files read into two-image records with keypoints, boxes and category.

The fixture follows SPair-71k's release layout (cvlab.postech.ac.kr/research/SPair-71k, as its authors' loader
juhongm999/hpf data/spair.py reads it): PairAnnotation/<split>/<id>-<src>-<trg>:<category>.json holding
src_imname / trg_imname, src_kps / trg_kps ([x, y] lists), src_bndbox / trg_bndbox, category, kps_ids and the
difficulty flags; JPEGImages/<category>/<imname>.
"""

from __future__ import annotations

import json

import pytest

import store.reader
from analyses.correspondence import keypoint_pairs
from capture.datasets import open_dataset
from capture.errors import CaptureError

PAIRS = {
    "test": [
        ("000001-2008_000001-2008_000002:cat", "cat", "2008_000001", "2008_000002",
         [[10, 12], [20, 14.5]], [[30, 10], [35, 20]], [5, 6, 40, 30], [25, 4, 60, 40]),
        ("000002-2009_000003-2009_000004:dog", "dog", "2009_000003", "2009_000004",
         [[8, 8]], [[50, 9]], [1, 2, 30, 40], [20, 2, 62, 44]),
        ("000003-2008_000002-2008_000001:cat", "cat", "2008_000002", "2008_000001",
         [[30, 10]], [[10, 12]], [25, 4, 60, 40], [5, 6, 40, 30]),
    ],
    "trn": [("000004-2009_000004-2009_000003:dog", "dog", "2009_000004", "2009_000003",
             [[50, 9]], [[8, 8]], [20, 2, 62, 44], [1, 2, 30, 40])],
}


@pytest.fixture
def spair_root(tmp_path, write_image):
    root = tmp_path / "SPair-71k"
    for category, names in (("cat", ("2008_000001", "2008_000002")), ("dog", ("2009_000003", "2009_000004"))):
        for name in names:
            write_image(root / "JPEGImages" / category / f"{name}.jpg", 64, 48)
    for split, pairs in PAIRS.items():
        (root / "PairAnnotation" / split).mkdir(parents=True)
        for number, (filename, category, src, trg, src_kps, trg_kps, src_box, trg_box) in enumerate(pairs, start=1):
            pair = {"pair_id": number, "filename": filename, "src_imname": f"{src}.jpg", "trg_imname": f"{trg}.jpg",
                    "src_imsize": [64, 48, 3], "trg_imsize": [64, 48, 3], "src_bndbox": src_box,
                    "trg_bndbox": trg_box, "src_pose": "Right", "trg_pose": "Left", "category": category,
                    "src_kps": src_kps, "trg_kps": trg_kps, "kps_ids": [str(k) for k in range(len(src_kps))],
                    "mirror": 0, "viewpoint_variation": 1, "scale_variation": 0, "truncation": 2, "occlusion": 0}
            (root / "PairAnnotation" / split / f"{filename}.json").write_text(json.dumps(pair))
    return root


def test_pairs_become_two_image_records(spair_root):
    dataset = open_dataset("spair", spair_root, None, None)
    assert dataset.split == "test"
    assert [r.sample_id for r in dataset.records] == [p[0] for p in PAIRS["test"]]
    first = dataset.records[0]
    assert first.image_paths == (spair_root / "JPEGImages/cat/2008_000001.jpg", spair_root / "JPEGImages/cat/2008_000002.jpg")
    assert first.annotation == {
        "category": "cat", "image_id": "2008_000001", "file_name": "JPEGImages/cat/2008_000001.jpg",
        "keypoints": [[[10.0, 12.0], [20.0, 14.5]], [[30.0, 10.0], [35.0, 20.0]]],
        "bboxes": [[5.0, 6.0, 40.0, 30.0], [25.0, 4.0, 60.0, 40.0]],
        "kps_ids": ["0", "1"], "viewpoint_variation": 1, "scale_variation": 0, "truncation": 2, "occlusion": 0,
    }
    assert first.text is None
    trn = open_dataset("spair", spair_root, "trn", None)
    assert [r.sample_id for r in trn.records] == ["000004-2009_000004-2009_000003:dog"]


def test_categories_select_pairs(spair_root):
    dogs = open_dataset("spair", spair_root, "test", None, subset="dog")
    assert [r.sample_id for r in dogs.records] == ["000002-2009_000003-2009_000004:dog"]
    both = open_dataset("spair", spair_root, "test", 2, subset="dog,cat")
    assert [r.annotation["category"] for r in both.records] == ["cat", "dog"]
    with pytest.raises(CaptureError, match="unknown --subset .horse. for --dataset spair"):
        open_dataset("spair", spair_root, "test", None, subset="horse")


def test_wrong_root_and_split_are_one_line(spair_root, tmp_path):
    with pytest.raises(CaptureError, match=r"PairAnnotation/test") as error:
        open_dataset("spair", tmp_path / "elsewhere", None, None)
    assert "\n" not in str(error.value)
    with pytest.raises(CaptureError, match="unknown --split 'train'"):
        open_dataset("spair", spair_root, "train", None)
    (spair_root / "PairAnnotation/test/000009-a-b:cat.json").write_text(json.dumps({"category": "cat"}))
    with pytest.raises(CaptureError, match="000009-a-b:cat.json: not an SPair pair file"):
        open_dataset("spair", spair_root, None, None)


def test_a_tiny_model_captures_pairs_with_their_keypoints(spair_root, tmp_path, capture_two):
    ds = capture_two("spair", spair_root, tmp_path / "spair.zarr")
    pairs = keypoint_pairs(ds)
    assert len(pairs) == 2
    assert pairs[0].source_points.tolist() == [[10.0, 12.0], [20.0, 14.5]]
    assert pairs[0].target_points.tolist() == [[30.0, 10.0], [35.0, 20.0]]
    assert pairs[0].target_box == (25.0, 4.0, 60.0, 40.0) and pairs[1].source_box == (1.0, 2.0, 30.0, 40.0)


def test_the_cli_subset_reaches_the_reader_and_the_capture_config(spair_root, tmp_path):
    from capture.options import parse_options
    from capture.run import run_capture
    from store import schema

    out = tmp_path / "dogs.zarr"
    options = parse_options(["--model", "tiny-llava-1.5", "--dataset", "spair", "--data-root", str(spair_root),
                             "--subset", "dog", "--out", str(out), "--no-progress"])
    run_capture(options)
    ds = store.reader.open(out)
    assert [str(s) for s in ds.sample_id.values] == ["000002-2009_000003-2009_000004:dog"]
    assert schema.CaptureConfig.of(ds.attrs).subset == "dog"
