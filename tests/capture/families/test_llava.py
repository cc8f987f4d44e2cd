"""LLaVA-1.5: a p x p row-major grid whose token boxes follow the processor's resize and crop (or pad)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import LlavaImageProcessorPil

from capture.families.llava import tile_layout
from capture.prompts import build_prompt
from store.schema import ImagePart, TokenKind

from .conformance import FamilyAdapterTests

SIZES = [(100, 80), (56, 56), (300, 60), (60, 300), (640, 480), (480, 640), (57, 200)]  # (w, h)


def _pixel_centres(image_processor, image, patches: int) -> np.ndarray:
    """(patches, patches, 2): mean original (x, y) seen by each patch, decoded from a coordinate image."""
    pixels = np.asarray(image_processor(images=[image], return_tensors="pt")["pixel_values"][0], np.float64)
    mean, std = np.array(image_processor.image_mean), np.array(image_processor.image_std)
    rgb = pixels * std[:, None, None] + mean[:, None, None]  # back to [0, 1]
    tile = rgb.shape[-1]
    step = tile // patches
    xy = rgb[:2].reshape(2, patches, step, patches, step).mean(axis=(2, 4))  # (2, rows, cols)
    return np.moveaxis(xy, 0, -1)


def _check_boxes(table_box: np.ndarray, centres: np.ndarray, patches: int, padded: np.ndarray | None = None) -> None:
    box = table_box.reshape(patches, patches, 4)
    x, y = centres[..., 0], centres[..., 1]
    inside = (x >= box[..., 0] - 0.02) & (x <= box[..., 2] + 0.02) & (y >= box[..., 1] - 0.02) & (y <= box[..., 3] + 0.02)
    keep = np.ones_like(inside) if padded is None else ~padded
    if not keep.any():
        return
    assert inside[keep].all()
    # and the box centre is where the patch actually looks
    assert np.abs((box[..., 0] + box[..., 2]) / 2 - x)[keep].max() < 0.03
    assert np.abs((box[..., 1] + box[..., 3]) / 2 - y)[keep].max() < 0.03


@pytest.mark.parametrize("size", SIZES)
def test_grid_and_boxes_follow_resize_and_centre_crop(tiny_model, coordinate_image, size):
    tiny = tiny_model("tiny-llava-1.5")
    width, height = size
    image = coordinate_image(width, height)
    inputs = tiny.adapter.processor_inputs(tiny.processor, build_prompt(tiny.processor, "chat", "x", 1), [image])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, [(height, width)])
    patches = tiny.config.vision_config.image_size // tiny.config.vision_config.patch_size
    image_rows = table.fields["image_index"] == 0
    assert image_rows.sum() == patches**2
    assert np.array_equal(np.flatnonzero(image_rows), np.flatnonzero(inputs["input_ids"][0].numpy() == tiny.config.image_token_id))
    assert (table.fields["kind"][image_rows] == TokenKind.IMAGE).all()
    assert (table.fields["image_part"][image_rows] == ImagePart.BASE).all()
    rows, cols = np.divmod(np.arange(patches**2), patches)  # row-major, as CLIP flattens its patch grid
    assert np.array_equal(table.fields["grid_row"][image_rows], rows)
    assert np.array_equal(table.fields["grid_col"][image_rows], cols)
    _check_boxes(table.box[image_rows], _pixel_centres(tiny.processor.image_processor, image, patches), patches)


@pytest.mark.parametrize("size", [(100, 80), (60, 300), (640, 480)])
def test_boxes_follow_pad_to_square(coordinate_image, size):
    width, height = size
    processor = LlavaImageProcessorPil(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56}, do_pad=True)
    image = coordinate_image(width, height)
    layout = tile_layout(processor, height, width, 4)
    pixels = np.asarray(processor(images=[image], return_tensors="pt")["pixel_values"][0], np.float64)
    blue = pixels[2] * processor.image_std[2] + processor.image_mean[2]
    # the padding is the mean colour (blue 0.41); the image's blue is 0.5: tokens touching padding are excluded
    padded = blue.reshape(4, 14, 4, 14).min(axis=(1, 3)) < 0.45
    _check_boxes(layout.box, _pixel_centres(processor, image, 4), 4, padded)
    box = layout.box.reshape(4, 4, 4)
    if width / height >= 2 or height / width >= 2:  # whole token columns/rows of padding: clipped to nothing
        assert padded.any()
        assert ((box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1]) == 0).any()


def test_prompt_has_bos_and_images_first(tiny_model):
    tiny = tiny_model("tiny-llava-1.5")
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
    assert prompt == "USER: <image>\nDescribe. ASSISTANT:"
    text_only = build_prompt(tiny.processor, "chat", "a dog", 0)
    assert text_only == "USER: a dog ASSISTANT:"
    inputs = tiny.adapter.processor_inputs(tiny.processor, text_only, [])
    assert int(inputs["input_ids"][0, 0]) == tiny.processor.tokenizer.bos_token_id
    with torch.inference_mode():
        tiny.model(**inputs)


class TestLlavaConformance(FamilyAdapterTests):
    family = "llava"
