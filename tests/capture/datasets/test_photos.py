"""`--dataset photos`: the packaged photographs, their hand-written captions and the annotations they carry."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from capture.datasets import open_dataset
from capture.errors import CaptureError

QUOKKA_W, QUOKKA_H = 960, 643  # quokka.jpg
# from imgaug 0.4.0's quokka_annotations.json, copied by hand
QUOKKA_BOX = [148.0, 50.0, 550.0, 642.0]
QUOKKA_POINTS = [[163, 78], [422, 56], [248, 205], [366, 194], [313, 270], [244, 535], [290, 536]]
QUOKKA_NAMES = ["ear_tip_left", "ear_tip_right", "eye_left", "eye_right", "nose", "paw_left", "paw_right"]


@pytest.fixture(scope="module")
def records(cache_home) -> dict:
    return {r.sample_id: r for r in open_dataset("photos", None, None, None).records}


def _package_dir(name: str) -> Path:
    return Path(importlib.util.find_spec(name).origin).parent


def test_photos_are_the_packages_files_with_one_caption_each(records):
    singles = [r for r in records.values() if len(r.image_paths) == 1]
    assert len(singles) == 19 and len(records) == 23
    chelsea = records["chelsea"]
    assert chelsea.annotation["captions"] == ["A close-up of a tabby cat with green eyes looking to the side."]
    assert chelsea.image_paths[0].read_bytes() == (_package_dir("skimage") / "data" / "chelsea.png").read_bytes()
    hopper = records["grace_hopper"]
    assert hopper.annotation["file_name"] == "matplotlib/mpl-data/sample_data/grace_hopper.jpg"
    assert hopper.image_paths[0].read_bytes() == (_package_dir("matplotlib") / "mpl-data" / "sample_data" /
                                                  "grace_hopper.jpg").read_bytes()
    for record in singles:
        (caption,) = record.annotation["captions"]
        assert caption[0].isupper() and caption.endswith(".") and caption.count(". ") == 0


def test_quokka_box_keypoints_and_outline_mask(records):
    quokka = records["quokka"].annotation
    assert quokka["keypoints"] == [[[float(x), float(y)] for x, y in QUOKKA_POINTS]]
    assert quokka["keypoint_names"] == QUOKKA_NAMES
    assert quokka["bboxes"] == [QUOKKA_BOX]
    (obj,) = quokka["objects"]
    assert obj["label"] == "quokka" and obj["box"] == QUOKKA_BOX and obj["id"] == 1
    assert obj["segmentation"][0][:4] == [422.0, 56.0, 435.0, 66.0]  # the outline's first two vertices
    mask = np.asarray(Image.open(quokka["masks"]))
    assert mask.shape == (QUOKKA_H, QUOKKA_W) and set(np.unique(mask)) == {0, 1}
    assert mask[300, 313] == 1 and mask[20, 20] == 0 and mask[300, 700] == 0  # body; corner; wall on the right
    assert 0.25 < mask.mean() < 0.4  # the outline covers about a third of the photo


def test_quokka_pairs_map_keypoints_by_their_transform(records):
    flip = records["quokka-flip"].annotation
    assert flip["keypoints"][1][4] == [960.0 - 313, 270.0]  # the nose, mirrored: x -> width - x
    assert flip["bboxes"][1] == [960.0 - 550, 50.0, 960.0 - 148, 642.0]
    flipped = np.asarray(Image.open(records["quokka-flip"].image_paths[1]).convert("L"), np.float64)
    original = np.asarray(Image.open(records["quokka"].image_paths[0]).convert("L"), np.float64)
    assert np.abs(flipped[:, ::-1] - original).mean() < 2.0  # JPEG noise only

    scale = records["quokka-scale"].annotation
    assert Image.open(records["quokka-scale"].image_paths[1]).size == (480, 322)
    assert scale["keypoints"][1][4] == [round(313 * 480 / 960, 2), round(270 * 322 / 643, 2)]

    crop = records["quokka-crop"].annotation  # crop box x 100..600, y 30..480
    assert Image.open(records["quokka-crop"].image_paths[1]).size == (500, 450)
    assert crop["keypoints"][1][4] == [213.0, 240.0]
    assert crop["keypoints"][1][5:] == [None, None]  # the paws (y 535) are cut off
    assert crop["bboxes"][1] == [48.0, 20.0, 450.0, 450.0]
    for pair in ("quokka-flip", "quokka-scale", "quokka-crop"):
        assert records[pair].annotation["keypoints"][0] == records["quokka"].annotation["keypoints"][0]
        assert len(records[pair].annotation["masks"]) == 2


def test_stereo_pair_matches_by_ground_truth_disparity(records):
    stereo = records["motorcycle-stereo"]
    assert [p.name for p in stereo.image_paths] == ["motorcycle_left.png", "motorcycle_right.png"]
    left, right = stereo.annotation["keypoints"]
    disparity = np.load(_package_dir("skimage") / "data" / "motorcycle_disp.npz")["arr_0"]
    # the grid's first point: pixel (row 20, col 20), centre (20.5, 20.5); its match is d pixels to the left
    d = float(disparity[20, 20])
    assert np.isfinite(d) and left[0] == [20.5, 20.5] and right[0] == [round(20.5 - d, 2), 20.5]
    valid = sum(np.isfinite(disparity[r, c]) and 0 <= c + 0.5 - disparity[r, c]
                for r in range(20, 481, 40) for c in range(20, 722, 40))
    assert len(left) == len(right) == valid == 184
    assert all(ly == ry for (_, ly), (_, ry) in zip(left, right))  # rectified: same row
    assert stereo.annotation["bboxes"] == [[0.0, 0.0, 741.0, 500.0]] * 2
    # matched pixels look alike (photometric check of the convention x_right = x_left - d)
    grey = [np.asarray(Image.open(p).convert("L"), np.float64) for p in stereo.image_paths]
    at = [g[int(y), int(x)] for g, pts in zip(grey, (left, right)) for x, y in pts]
    n = len(left)
    assert np.abs(np.array(at[:n]) - np.array(at[n:])).mean() < 15


def test_subsets_and_bad_subset(cache_home):
    assert len(open_dataset("photos", None, None, None, "photos").records) == 19
    pairs = open_dataset("photos", None, None, None, "pairs").records
    assert [r.sample_id for r in pairs] == ["quokka-flip", "quokka-scale", "quokka-crop", "motorcycle-stereo"]
    assert len(open_dataset("photos", None, None, 3).records) == 3
    with pytest.raises(CaptureError, match="unknown --subset 'videos' of photos"):
        open_dataset("photos", None, None, None, "videos")


def test_generated_folder_is_versioned(cache_home, tmp_path):
    root = tmp_path / "photos"
    open_dataset("photos", root, None, 1)
    assert json.loads((root / "photos.json").read_text()) == {"version": 1}
    other = tmp_path / "not-photos"
    other.mkdir()
    (other / "something.txt").write_text("x")
    with pytest.raises(CaptureError, match="is not a photos data set"):
        open_dataset("photos", other, None, 1)
