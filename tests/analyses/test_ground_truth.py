"""analyses.ground_truth.object_masks on annotations of the native readers: ids named by `mask_labels`, and a
referred object's own COCO segmentation."""

from __future__ import annotations

import json

import numpy as np
import xarray as xr
from PIL import Image

from analyses.ground_truth import object_masks
from store import schema


def _store_like(dataset: str, annotations: list[dict], sizes: list[tuple[int, int]]) -> xr.Dataset:
    """The variables object_masks reads from a store: annotation JSON, image sizes, the capture config."""
    return xr.Dataset(
        {"annotation": ("sample", [json.dumps(a) for a in annotations]),
         "image_height": (("sample", "image"), [[h] for h, _ in sizes]),
         "image_width": (("sample", "image"), [[w] for _, w in sizes])},
        attrs={schema.ATTR_CAPTURE_CONFIG: schema.CaptureConfig(
            model="tiny-llava-ov", revision="-", compute_dtype="float32", dataset=dataset, data_root="/nowhere",
            n_samples=len(annotations), layers=(0,), streams=(0,), tokens=("all",)).to_attrs()})


def test_mask_labels_name_the_class_ids(tmp_path):
    ids = np.array([[0, 15, 15], [255, 1, 0]], np.uint8)  # VOC: person 15, aeroplane 1, border 255
    Image.fromarray(ids, mode="L").save(tmp_path / "m.png")
    annotation = {"masks": str(tmp_path / "m.png"), "mask_labels": {"1": "aeroplane", "15": "person"}}
    masks = object_masks(_store_like("pascal5i", [annotation], [(2, 3)]), 0)
    assert sorted(masks) == ["aeroplane", "person"]
    assert masks["person"].tolist() == [[False, True, True], [False, False, False]]
    assert masks["aeroplane"].tolist() == [[False, False, False], [False, True, False]]
    unnamed = object_masks(_store_like("manifest", [{"masks": str(tmp_path / "m.png")}], [(2, 3)]), 0)
    assert sorted(unnamed) == ["1", "15", "255"]


def test_a_referred_object_is_its_segmentation(tmp_path):
    polygon = {"id": 7, "label": "dog", "box": [1, 0, 3, 2], "segmentation": [[1, 0, 3, 0, 3, 2, 1, 2]]}
    masks = object_masks(_store_like("refcoco", [{"object": polygon}], [(3, 4)]), 0)
    assert list(masks) == ["dog"]
    assert masks["dog"].tolist() == [[False, True, True, False], [False, True, True, False], [False] * 4]
