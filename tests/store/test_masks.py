"""store.masks: label-id files in each encoding the readers point to, ids named by labels, COCO segmentations."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask
from scipy.io import savemat

from store.masks import label_masks, read_label_mask, segmentation_mask

IDS = np.array([[0, 0, 1, 1],
                [0, 2, 2, 255],
                [0, 2, 0, 0]], np.uint8)


def test_palette_and_grey_pngs_are_read_as_their_indices(tmp_path):
    palette = Image.fromarray(IDS, mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0] + [224, 224, 192] * 253)  # DAVIS / VOC style colours
    palette.save(tmp_path / "palette.png")
    Image.fromarray(IDS, mode="L").save(tmp_path / "grey.png")
    for name in ("palette.png", "grey.png"):
        ids = read_label_mask(tmp_path / name)
        assert ids.dtype == np.int64 and ids.tolist() == IDS.tolist()


def test_rgb_colours_are_numbered_with_black_first(tmp_path):
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = (255, 255, 255)
    rgb[1, 2] = (0, 0, 200)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    # sorted colours: black (0,0,0) -> 0, (0,0,200) -> 1, white -> 2
    assert read_label_mask(tmp_path / "rgb.png").tolist() == [[0, 2, 0], [0, 0, 1]]


def test_sbd_mat_files_are_read_from_their_segmentation_field(tmp_path):
    """SBD (benchmark_RELEASE/dataset/cls/*.mat): a struct GTcls with Segmentation, Boundaries, CategoriesPresent."""
    savemat(tmp_path / "cls.mat", {"GTcls": {"Segmentation": IDS, "Boundaries": np.zeros((20, 1), object),
                                             "CategoriesPresent": np.array([1, 2], np.uint8)}})
    savemat(tmp_path / "inst.mat", {"GTinst": {"Segmentation": IDS, "Categories": np.array([15, 15], np.uint8)}})
    assert read_label_mask(tmp_path / "cls.mat").tolist() == IDS.tolist()
    assert read_label_mask(tmp_path / "inst.mat").tolist() == IDS.tolist()
    savemat(tmp_path / "other.mat", {"x": IDS})
    with pytest.raises(ValueError, match="GTcls, GTinst"):
        read_label_mask(tmp_path / "other.mat")


def test_label_masks_name_ids_and_leave_the_border_out():
    ids = IDS.astype(np.int64)
    named = label_masks(ids, {"1": "cat", "2": "cat", "7": "dog"})
    assert sorted(named) == ["cat", "dog"]
    assert named["cat"].tolist() == [[False, False, True, True], [False, True, True, False], [False, True, False, False]]
    assert not named["dog"].any()  # listed, absent from the file: an empty mask
    plain = label_masks(ids)
    assert sorted(plain) == ["1", "2", "255"] and plain["1"].sum() == 2 and plain["2"].sum() == 3


def test_segmentation_masks_from_polygons_and_rle():
    # a polygon's pixels are those whose unit square lies inside: corners (2, 1)-(6, 4) cover x 2..5, y 1..3
    square = segmentation_mask([[2, 1, 6, 1, 6, 4, 2, 4]], 6, 8)
    expected = np.zeros((6, 8), bool)
    expected[1:4, 2:6] = True
    assert np.array_equal(square, expected)
    # uncompressed RLE runs column-major over a 3 x 4 image: 4 background, 2 object, 6 background pixels,
    # so the object is pixels 4 and 5 in column order: (row 1, col 1) and (row 2, col 1)
    runs = segmentation_mask({"size": [3, 4], "counts": [4, 2, 6]}, 3, 4)
    assert np.argwhere(runs).tolist() == [[1, 1], [2, 1]]
    compressed = coco_mask.encode(np.asfortranarray(runs.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()  # as a JSON file holds it
    assert np.array_equal(segmentation_mask(compressed, 3, 4), runs)
    with pytest.raises(ValueError, match="not a COCO segmentation"):
        segmentation_mask({"points": []}, 3, 4)
