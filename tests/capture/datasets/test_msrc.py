"""msrc: the MSRC co-segmentation subset read into per-image records with class and binary mask.

Two fixtures, one per distributed layout: Rubinstein et al.'s Object Discovery download (people.csail.mit.edu/
mrub/ObjectDiscovery: <class>/<image> with <class>/GroundTruth/<image>.png, white object on black; MSRC's images
are .bmp) and the co-saliency benchmarks' copy (Image/<class>/ beside GroundTruth/<class>/).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from analyses.ground_truth import object_masks
from analyses.tokens import sample_annotation
from capture.datasets import open_dataset
from capture.errors import CaptureError

COW = np.array([[0, 0, 0, 0, 0], [0, 255, 255, 0, 0], [0, 255, 255, 255, 0], [0, 0, 0, 0, 0]], np.uint8)
COW2 = np.array([[0, 0, 0, 0, 0], [0, 0, 0, 255, 255], [0, 0, 0, 255, 255], [0, 0, 0, 0, 0]], np.uint8)
PLANE = np.array([[255, 255, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]], np.uint8)


@pytest.fixture
def object_discovery_root(tmp_path, write_image):
    root = tmp_path / "MSRC"
    for label, name, mask in (("cow", "1_1_s", COW), ("cow", "1_2_s", COW2), ("plane", "3_5_s", PLANE)):
        write_image(root / label / f"{name}.bmp", 5, 4)
        (root / label / "GroundTruth").mkdir(exist_ok=True)
        Image.fromarray(mask, mode="L").save(root / label / "GroundTruth" / f"{name}.png")
    return root


def test_images_become_records_with_class_and_mask(object_discovery_root):
    root = object_discovery_root
    dataset = open_dataset("msrc", root, None, None)
    assert [r.sample_id for r in dataset.records] == ["cow/1_1_s", "cow/1_2_s", "plane/3_5_s"]
    first = dataset.records[0]
    assert first.image_paths == (root / "cow/1_1_s.bmp",)
    assert first.annotation == {"category": "cow", "categories": ["cow"], "image_id": "1_1_s", "file_name": "cow/1_1_s.bmp",
                                "masks": str((root / "cow/GroundTruth/1_1_s.png").resolve()), "mask_labels": {"255": "cow"}}
    planes = open_dataset("msrc", root, None, None, subset="plane")
    assert [r.sample_id for r in planes.records] == ["plane/3_5_s"]
    with pytest.raises(CaptureError, match="unknown --subset .horse. for --dataset msrc"):
        open_dataset("msrc", root, None, None, subset="horse")


def test_the_co_saliency_layout_with_rgb_and_empty_masks(tmp_path, write_image):
    root = tmp_path / "msrc"
    write_image(root / "Image/car/a.jpg", 5, 4)
    write_image(root / "Image/car/b.jpg", 5, 4)
    white = np.zeros((4, 5, 3), np.uint8)
    white[2, 1:3] = 255
    (root / "GroundTruth/car").mkdir(parents=True)
    Image.fromarray(white).save(root / "GroundTruth/car/a.png")
    Image.fromarray(np.zeros((4, 5, 3), np.uint8)).save(root / "GroundTruth/car/b.png")  # no object in this image
    a, b = open_dataset("msrc", root, None, None).records
    assert a.annotation["file_name"] == "Image/car/a.jpg"
    assert a.annotation["mask_labels"] == {"1": "car"}  # RGB: black is id 0, white id 1
    assert b.annotation["mask_labels"] == {"1": "car"}  # empty: still the class, with an empty mask


def test_wrong_root_missing_masks_and_splits_are_one_line(object_discovery_root, tmp_path):
    (tmp_path / "plain").mkdir()
    with pytest.raises(CaptureError, match="GroundTruth") as error:
        open_dataset("msrc", tmp_path / "plain", None, None)
    assert "\n" not in str(error.value)
    with pytest.raises(CaptureError, match="has no splits"):
        open_dataset("msrc", object_discovery_root, "val", None)
    (object_discovery_root / "plane/GroundTruth/3_5_s.png").write_bytes(b"\x89PNG truncated")
    with pytest.raises(CaptureError, match=r"unreadable mask .*3_5_s.png") as error:
        open_dataset("msrc", object_discovery_root, None, None)
    assert "\n" not in str(error.value)
    (object_discovery_root / "plane/GroundTruth/3_5_s.png").unlink()
    with pytest.raises(CaptureError, match=r"no ground-truth mask for .*3_5_s.bmp"):
        open_dataset("msrc", object_discovery_root, None, None)


def test_a_tiny_model_captures_a_co_segmentation_set(object_discovery_root, tmp_path, capture_two):
    ds = capture_two("msrc", object_discovery_root, tmp_path / "msrc.zarr")
    assert [sample_annotation(ds, s)["categories"] for s in (0, 1)] == [["cow"], ["cow"]]  # one co-segmentation set
    assert object_masks(ds, 0)["cow"].tolist() == (COW == 255).tolist()
    assert object_masks(ds, 1)["cow"].tolist() == (COW2 == 255).tolist()
