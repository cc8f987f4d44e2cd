"""The anyres token table (LLaVA-NeXT and OneVision) agrees with the model's own image-feature packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.image_processing_utils import select_best_resolution

from capture.prompts import build_prompt
from store.schema import ImagePart, TokenKind

NEWLINE_MARK = -7.0
SIZES = [(100, 80), (56, 56), (300, 60), (60, 300), (640, 480), (480, 640), (200, 150), (1000, 90)]  # (w, h)


def _labelled_features(n_tiles: int, patches: int, tiles_wide: int) -> torch.Tensor:
    """Features whose channels say where they came from: [abs_row, abs_col, is_grid, base_row, base_col]."""
    features = torch.zeros(n_tiles, patches * patches, 5)
    rows, cols = torch.meshgrid(torch.arange(patches), torch.arange(patches), indexing="ij")
    features[0, :, 3], features[0, :, 4] = rows.flatten(), cols.flatten()
    for tile in range(1, n_tiles):
        tile_row, tile_col = divmod(tile - 1, tiles_wide)
        features[tile, :, 0] = (tile_row * patches + rows).flatten()
        features[tile, :, 1] = (tile_col * patches + cols).flatten()
        features[tile, :, 2] = 1
    return features


def _pack(loaded, features, image_sizes):
    newline = torch.full((5,), NEWLINE_MARK)
    if loaded.adapter.family == "llava_onevision":
        return loaded.model.model.pack_image_features(
            [features], image_sizes, image_newline=newline, vision_aspect_ratio=loaded.config.vision_aspect_ratio)
    return loaded.model.model.pack_image_features([features], image_sizes, "default", image_newline=newline)


@pytest.mark.parametrize("model", ["tiny-llava-ov", "tiny-llava-next"])
@pytest.mark.parametrize("size", SIZES)
def test_table_matches_pack_image_features(tiny_model, noise_image, model, size):
    tiny = tiny_model(model)
    width, height = size
    config = tiny.config
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
    inputs = tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(width, height)])
    table = tiny.adapter.token_table(tiny.processor, config, inputs, [(height, width)])
    image = table.fields["image_index"] == 0
    tile_px, patches = config.vision_config.image_size, config.vision_config.image_size // config.vision_config.patch_size
    best_h, best_w = select_best_resolution((height, width), config.image_grid_pinpoints)
    n_tiles = 1 + (best_h // tile_px) * (best_w // tile_px)
    packed, lengths = _pack(tiny, _labelled_features(n_tiles, patches, best_w // tile_px), inputs["image_sizes"])
    packed = packed[0].numpy() if isinstance(packed, list | tuple) else packed.numpy()
    assert len(packed) == image.sum() == int(lengths[0])

    kind, part = table.fields["kind"][image], table.fields["image_part"][image]
    is_newline = packed[:, 0] == NEWLINE_MARK
    assert np.array_equal(kind == TokenKind.IMAGE_NEWLINE, is_newline)
    base = part == ImagePart.BASE
    assert np.array_equal(base, (packed[:, 2] == 0) & ~is_newline)
    assert np.array_equal(table.fields["patch_row"][image][base], packed[base, 3])
    assert np.array_equal(table.fields["patch_col"][image][base], packed[base, 4])

    grid = (part == ImagePart.GRID) & ~is_newline
    abs_row = table.fields["tile_row"][image][grid] * patches + table.fields["patch_row"][image][grid]
    abs_col = table.fields["tile_col"][image][grid] * patches + table.fields["patch_col"][image][grid]
    downsampled = table.fields["downsampled"][image][grid]
    assert downsampled.all() or not downsampled.any()
    if downsampled.any():  # bilinear of a linear ramp is the source coordinate: ours is the nearest patch
        assert tiny.adapter.family == "llava_onevision"
        assert np.abs(abs_row - packed[grid, 0]).max() <= 0.5
        assert np.abs(abs_col - packed[grid, 1]).max() <= 0.5
    else:
        assert np.array_equal(abs_row, packed[grid, 0])
        assert np.array_equal(abs_col, packed[grid, 1])
    # Grid tokens' grid_row/col enumerate the packed grid row by row, newline last in each row.
    grid_rows = table.fields["grid_row"][image][part == ImagePart.GRID]
    assert (np.diff(grid_rows) >= 0).all()
    # The base view covers the image exactly; the grid up to the partial patch rows unpadding drops.
    boxes = table.box[image][base]
    assert np.allclose([boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max()], [0, 0, 1, 1])
    boxes = table.box[image][grid]
    token_w, token_h = (boxes[:, 2] - boxes[:, 0]).max(), (boxes[:, 3] - boxes[:, 1]).max()
    assert boxes[:, 0].min() <= token_w and boxes[:, 2].max() >= 1 - token_w
    assert boxes[:, 1].min() <= token_h and boxes[:, 3].max() >= 1 - token_h
    assert np.isnan(table.box[~image]).all()
