"""The anyres tiling of LLaVA-NeXT and LLaVA-OneVision: token geometry of one image.

An image becomes a base view (the whole image squashed to one p x p tile, no newline tokens) and a
high-resolution view: the image resized into the best-fitting pinpoint resolution, cut into tiles,
stitched back into one patch grid with the letterbox padding removed, and emitted row by row with
one `image_newline` token after each row. OneVision alone may bilinearly downsample that grid
(`max_tiles`, its `anyres_max_N`); the caller decides, so the family quirk stays in its adapter.
"""

from __future__ import annotations

import math

import numpy as np
from transformers.image_processing_utils import select_best_resolution

from capture.families.base import ImageLayout, grid_layout
from store.schema import ImagePart


def base_view_layout(patches: int) -> ImageLayout:
    def box_of(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.stack([cols / patches, rows / patches, (cols + 1) / patches, (rows + 1) / patches], axis=1)

    return grid_layout(patches, patches, part=ImagePart.BASE, box_of=box_of)


def single_newline_layout(patches: int) -> ImageLayout:
    layout = grid_layout(1, 0, part=ImagePart.BASE, box_of=lambda r, c: np.zeros((0, 4)), newline_after_row=True)
    layout.grid_row[:] = patches - 1
    layout.grid_col[:] = patches
    return layout


def high_res_layout(
    height: int, width: int, tile_px: int, patches: int, pinpoints: list[list[int]], max_tiles: int | None = None
) -> ImageLayout:
    """The high-resolution view of an image of `height` x `width` pixels.

    With `max_tiles` (OneVision's anyres_max_N), a grid larger than 1.1 x sqrt(max_tiles) tiles of
    patches per side is downsampled bilinearly, as the model does; tokens are then marked `downsampled`.
    """
    best_h, best_w = select_best_resolution((height, width), pinpoints)
    full_rows, full_cols = best_h // tile_px * patches, best_w // tile_px * patches
    # Letterbox padding removed from the stitched patch grid (as the model's unpad_image does).
    row0, col0, rows, cols = 0, 0, full_rows, full_cols
    if width / height > full_cols / full_rows:
        pad = (full_rows - int(round(height * (full_cols / width), 7))) // 2
        row0, rows = pad, full_rows - 2 * pad
    else:
        pad = (full_cols - int(round(width * (full_rows / height), 7))) // 2
        col0, cols = pad, full_cols - 2 * pad
    ratio = math.sqrt(rows * cols / (max_tiles * patches**2)) if max_tiles else 1.0
    downsampled = ratio > 1.1
    out_rows, out_cols = (int(rows // ratio), int(cols // ratio)) if downsampled else (rows, cols)

    # Pixel placement of the resized image on the best-resolution canvas (the processor's padding).
    scale_w, scale_h = best_w / width, best_h / height
    if scale_w < scale_h:
        content_w, content_h = best_w, min(math.ceil(height * scale_w), best_h)
    else:
        content_h, content_w = best_h, min(math.ceil(width * scale_h), best_w)
    paste_y, paste_x = (best_h - content_h) // 2, (best_w - content_w) // 2
    patch_px = tile_px / patches

    def source(index: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
        """Nearest source cell of an output cell under bilinear resizing (align_corners=False)."""
        centre = np.clip((index + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        return np.floor(centre + 0.5).astype(np.int64)

    def tile_patch_of(r: np.ndarray, c: np.ndarray):
        abs_row = row0 + source(r, out_rows, rows)
        abs_col = col0 + source(c, out_cols, cols)
        return abs_row // patches, abs_col // patches, abs_row % patches, abs_col % patches

    def box_of(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        y0 = (row0 + r * rows / out_rows) * patch_px
        y1 = (row0 + (r + 1) * rows / out_rows) * patch_px
        x0 = (col0 + c * cols / out_cols) * patch_px
        x1 = (col0 + (c + 1) * cols / out_cols) * patch_px
        box = np.stack([(x0 - paste_x) / content_w, (y0 - paste_y) / content_h,
                        (x1 - paste_x) / content_w, (y1 - paste_y) / content_h], axis=1)
        return np.clip(box, 0.0, 1.0)

    return grid_layout(
        out_rows, out_cols, part=ImagePart.GRID, box_of=box_of, tile_patch_of=tile_patch_of,
        downsampled=downsampled, newline_after_row=True,
    )
