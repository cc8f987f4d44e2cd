"""davis: DAVIS-2017 sequences read into single-frame records with their palette masks.

The fixture follows the DAVIS-2017 trainval release (davischallenge.org, "DAVIS-2017-trainval-480p.zip", as the
davis2017-evaluation toolkit reads it): ImageSets/2017/{train,val}.txt, JPEGImages/480p/<sequence>/00000.jpg,
Annotations/480p/<sequence>/00000.png as indexed PNGs whose palette index is the object id.
"""

from __future__ import annotations

import numpy as np
import pytest

from analyses.correspondence import videos
from capture.datasets import open_dataset
from capture.errors import CaptureError
from store.masks import read_label_mask

# bike-packing: two objects; the first moves right by one pixel a frame, the second stays
BIKE = [np.array([[0, 1, 1, 0, 0, 0], [0, 1, 1, 0, 2, 2], [0, 0, 0, 0, 2, 2], [0, 0, 0, 0, 0, 0]]),
        np.array([[0, 0, 1, 1, 0, 0], [0, 0, 1, 1, 2, 2], [0, 0, 0, 0, 2, 2], [0, 0, 0, 0, 0, 0]]),
        np.array([[0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 2], [0, 0, 0, 0, 2, 2], [0, 0, 0, 0, 0, 0]])]
COWS = [np.array([[0, 0, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]])] * 2


@pytest.fixture
def davis_root(tmp_path, write_image, palette_png):
    root = tmp_path / "DAVIS"
    (root / "ImageSets" / "2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("bike-packing\ncows\n")
    (root / "ImageSets/2017/train.txt").write_text("bear\n")
    for sequence, masks in (("bike-packing", BIKE), ("cows", COWS), ("bear", COWS[:1])):
        for frame, mask in enumerate(masks):
            write_image(root / "JPEGImages/480p" / sequence / f"{frame:05d}.jpg", 6, 4)
            palette_png(root / "Annotations/480p" / sequence / f"{frame:05d}.png", mask)
    return root


def test_frames_become_records_with_palette_masks(davis_root):
    dataset = open_dataset("davis", davis_root, None, None)
    assert dataset.split == "val"
    assert [r.sample_id for r in dataset.records] == ["bike-packing/00000", "bike-packing/00001", "bike-packing/00002",
                                                      "cows/00000", "cows/00001"]
    third = dataset.records[2]
    assert third.image_paths == (davis_root / "JPEGImages/480p/bike-packing/00002.jpg",)
    assert third.annotation == {"video": "bike-packing", "frame": 2, "file_name": "JPEGImages/480p/bike-packing/00002.jpg",
                                "masks": str((davis_root / "Annotations/480p/bike-packing/00002.png").resolve())}
    # the palette index is the object id: object 1 at columns 3-4 of rows 0-1, object 2 at the right edge
    assert read_label_mask(third.annotation["masks"]).tolist() == BIKE[2].tolist()
    train = open_dataset("davis", davis_root, "train", None)
    assert [r.sample_id for r in train.records] == ["bear/00000"]


def test_sequences_select_frames_and_frames_without_masks_keep_none(davis_root):
    cows = open_dataset("davis", davis_root, None, None, subset="cows")
    assert [r.annotation["frame"] for r in cows.records] == [0, 1]
    with pytest.raises(CaptureError, match="unknown --subset .bear. for --dataset davis"):
        open_dataset("davis", davis_root, None, None, subset="bear")
    (davis_root / "Annotations/480p/cows/00001.png").unlink()  # test-dev style: only the first frame annotated
    cows = open_dataset("davis", davis_root, None, None, subset="cows")
    assert "masks" in cows.records[0].annotation and "masks" not in cows.records[1].annotation


def test_wrong_root_and_split_are_one_line(davis_root, tmp_path):
    with pytest.raises(CaptureError, match=r"ImageSets/2017") as error:
        open_dataset("davis", tmp_path / "elsewhere", None, None)
    assert "\n" not in str(error.value)
    with pytest.raises(CaptureError, match=r"test-dev.txt for --split 'test-dev' \(found: train, val\)"):
        open_dataset("davis", davis_root, "test-dev", None)


def test_a_tiny_model_captures_frames_that_make_a_video(davis_root, tmp_path, capture_two):
    ds = capture_two("davis", davis_root, tmp_path / "davis.zarr")
    found = videos(ds)
    assert [v.name for v in found] == ["bike-packing"] and found[0].frames == [(0, 0), (1, 0)]
    assert [m.tolist() for m in found[0].masks] == [BIKE[0].tolist(), BIKE[1].tolist()]
