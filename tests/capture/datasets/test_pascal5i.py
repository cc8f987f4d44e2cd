"""pascal5i: VOC 2012 + SBD read into per-image records of a fold's classes, with class-id masks and instances.

The fixture follows the VOC2012 devkit layout (host.robots.ox.ac.uk/pascal/VOC/voc2012, devkit_doc: JPEGImages/,
ImageSets/Segmentation/{train,val}.txt, SegmentationClass/ and SegmentationObject/ as indexed PNGs with the VOC
colour map, 255 the unlabelled border) and SBD's two distributed forms (Hariharan et al.'s benchmark_RELEASE/
dataset/{cls,inst}/*.mat structs GTcls / GTinst with a Segmentation field, plus train.txt / val.txt; and the
converted grey SegmentationClassAug/*.png the few-shot loaders PANet, PFENet and HSNet read).
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from analyses.ground_truth import object_masks
from capture.datasets import open_dataset
from capture.datasets.pascal5i import fold_classes
from capture.errors import CaptureError

B = 255  # VOC's border
# 2007_000001: an aeroplane (class 1, instance 1) and a person (class 15, instance 2), the border around the plane
CLASSES_1 = np.array([[0, 1, 1, B, 0, 0], [0, 1, 1, B, 15, 15], [0, B, B, B, 15, 15], [0, 0, 0, 0, 15, 15], [0] * 6])
OBJECTS_1 = np.array([[0, 1, 1, B, 0, 0], [0, 1, 1, B, 2, 2], [0, B, B, B, 2, 2], [0, 0, 0, 0, 2, 2], [0] * 6])
BUS = np.array([[0] * 6, [0, 6, 6, 6, 0, 0], [0, 6, 6, 6, 0, 0], [0] * 6, [0] * 6])  # 2007_000002
BIRD = np.array([[3, 3, 0, 0, 0, 0], [3, 3, 0, 0, 0, 0], [0] * 6, [0] * 6, [0] * 6])  # 2007_000003
DOG = np.array([[0] * 6, [0] * 6, [0, 0, 12, 12, 0, 0], [0, 0, 12, 12, 0, 0], [0] * 6])  # 2008_000010 (VOC train)
BOAT = np.array([[0] * 6, [0] * 6, [0] * 6, [4, 4, 4, 0, 0, 0], [4, 4, 4, 0, 0, 0]])  # 2008_000020 (SBD only)
VAL = ["2007_000001", "2007_000002", "2007_000003"]


def _voc(root, write_image, palette_png):
    for image_id in [*VAL, "2008_000010", "2008_000020"]:
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 6, 5)
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(VAL) + "\n")
    (root / "ImageSets/Segmentation/train.txt").write_text("2008_000010\n")
    for image_id, classes in zip([*VAL, "2008_000010"], [CLASSES_1, BUS, BIRD, DOG], strict=True):
        palette_png(root / "SegmentationClass" / f"{image_id}.png", classes)
    palette_png(root / "SegmentationObject/2007_000001.png", OBJECTS_1)
    palette_png(root / "SegmentationObject/2007_000002.png", (BUS > 0).astype(np.uint8))
    return root


@pytest.fixture
def voc_aug(tmp_path, write_image, palette_png):
    """VOC2012 with SegmentationClassAug (grey PNGs for every SBD-annotated image and VOC's own)."""
    root = _voc(tmp_path / "aug/VOCdevkit/VOC2012", write_image, palette_png)
    (root / "SegmentationClassAug").mkdir()
    for image_id, classes in (("2007_000001", CLASSES_1), ("2008_000010", DOG), ("2008_000020", BOAT)):
        Image.fromarray(classes.astype(np.uint8), mode="L").save(root / "SegmentationClassAug" / f"{image_id}.png")
    return root


@pytest.fixture
def voc_sbd(tmp_path, write_image, palette_png):
    """VOC2012 with SBD's own release (.mat files) under benchmark_RELEASE/dataset/."""
    root = _voc(tmp_path / "sbd/VOCdevkit/VOC2012", write_image, palette_png)
    sbd = root / "benchmark_RELEASE/dataset"
    (sbd / "cls").mkdir(parents=True)
    (sbd / "inst").mkdir()
    savemat(sbd / "cls/2008_000020.mat", {"GTcls": {"Segmentation": BOAT.astype(np.uint8),
                                                    "CategoriesPresent": np.array([4], np.uint8)}})
    savemat(sbd / "inst/2008_000020.mat", {"GTinst": {"Segmentation": (BOAT > 0).astype(np.uint8),
                                                      "Categories": np.array([4], np.uint8)}})
    (sbd / "train.txt").write_text("2008_000020\n")
    (sbd / "val.txt").write_text("2007_000001\n")  # SBD's val holds VOC val images too: they stay out of train
    return root


def test_folds_are_the_standard_class_quintets():
    assert [fold_classes(f) for f in range(4)] == [[1, 2, 3, 4, 5], [6, 7, 8, 9, 10], [11, 12, 13, 14, 15],
                                                    [16, 17, 18, 19, 20]]


def test_val_images_become_records_with_masks_and_instances(voc_aug):
    dataset = open_dataset("pascal5i", voc_aug, None, None)
    assert dataset.split == "val" and [r.sample_id for r in dataset.records] == VAL
    first = dataset.records[0]
    assert first.image_paths == (voc_aug / "JPEGImages/2007_000001.jpg",)
    assert first.annotation == {
        "image_id": "2007_000001", "file_name": "JPEGImages/2007_000001.jpg", "categories": ["aeroplane", "person"],
        "masks": str((voc_aug / "SegmentationClass/2007_000001.png").resolve()),
        "mask_labels": {"1": "aeroplane", "15": "person"},
        "objects": [{"id": 1, "label": "aeroplane", "box": [1.0, 0.0, 3.0, 2.0]},
                    {"id": 2, "label": "person", "box": [4.0, 1.0, 6.0, 4.0]}],
    }
    assert dataset.records[1].annotation["objects"] == [{"id": 1, "label": "bus", "box": [1.0, 1.0, 4.0, 3.0]}]
    assert "objects" not in dataset.records[2].annotation  # no instance mask for 2007_000003


def test_a_fold_keeps_the_images_of_its_classes(voc_aug):
    fold0 = open_dataset("pascal5i", voc_aug, "val", None, subset="0")
    assert [(r.sample_id, r.annotation["categories"]) for r in fold0.records] == [
        ("2007_000001", ["aeroplane"]), ("2007_000003", ["bird"])]
    assert fold0.records[0].annotation["mask_labels"] == {"1": "aeroplane", "15": "person"}  # the whole mask named
    fold2 = open_dataset("pascal5i", voc_aug, "val", None, subset="2")
    assert [(r.sample_id, r.annotation["categories"]) for r in fold2.records] == [("2007_000001", ["person"])]
    folds = open_dataset("pascal5i", voc_aug, "val", None, subset="1,2")
    assert [r.sample_id for r in folds.records] == ["2007_000001", "2007_000002"]
    with pytest.raises(CaptureError, match="no val image holds a class of folds 3"):
        open_dataset("pascal5i", voc_aug, "val", None, subset="3")
    with pytest.raises(CaptureError, match="unknown --subset .4. for --dataset pascal5i"):
        open_dataset("pascal5i", voc_aug, "val", None, subset="4")


def test_train_is_voc_train_plus_sbd_less_val(voc_aug, voc_sbd):
    aug = open_dataset("pascal5i", voc_aug, "train", None)
    assert [r.sample_id for r in aug.records] == ["2008_000010", "2008_000020"]
    assert aug.records[0].annotation["masks"] == str((voc_aug / "SegmentationClass/2008_000010.png").resolve())
    assert aug.records[1].annotation["masks"] == str((voc_aug / "SegmentationClassAug/2008_000020.png").resolve())
    assert aug.records[1].annotation["categories"] == ["boat"] and "objects" not in aug.records[1].annotation
    mat = open_dataset("pascal5i", voc_sbd, "train", None)
    assert [r.sample_id for r in mat.records] == ["2008_000010", "2008_000020"]
    boat = mat.records[1].annotation
    assert boat["masks"] == str((voc_sbd / "benchmark_RELEASE/dataset/cls/2008_000020.mat").resolve())
    assert boat["mask_labels"] == {"4": "boat"}
    assert boat["objects"] == [{"id": 1, "label": "boat", "box": [0.0, 3.0, 3.0, 5.0]}]


def test_wrong_root_and_missing_sbd_are_one_line(voc_aug, tmp_path, write_image, palette_png):
    with pytest.raises(CaptureError, match="JPEGImages") as error:
        open_dataset("pascal5i", tmp_path / "elsewhere", None, None)
    assert "\n" not in str(error.value)
    bare = _voc(tmp_path / "bare", write_image, palette_png)
    with pytest.raises(CaptureError, match="--split train needs SBD") as error:
        open_dataset("pascal5i", bare, "train", None)
    assert "\n" not in str(error.value)
    with pytest.raises(CaptureError, match="unknown --split 'test'"):
        open_dataset("pascal5i", voc_aug, "test", None)


def test_a_tiny_model_captures_images_whose_masks_are_named(voc_aug, tmp_path, capture_two):
    ds = capture_two("pascal5i", voc_aug, tmp_path / "pascal.zarr")
    masks = object_masks(ds, 0)
    assert sorted(masks) == ["aeroplane", "person"]
    assert masks["aeroplane"].tolist() == (CLASSES_1 == 1).tolist()  # the border belongs to no class
    assert masks["person"].tolist() == (CLASSES_1 == 15).tolist()
    assert list(object_masks(ds, 1)) == ["bus"]
