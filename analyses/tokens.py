"""Image tokens of a store: which positions belong to an image, where they sit in it, and their vectors.

The token table (kind, image_index, image_part, grid_row / grid_col, token_box) maps every stored token
to its image region, for every family's layout (anyres tiles included). These helpers turn it into
positions, pixel footprints and per-(layer, head) vectors, and move labels between pixels and tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask
import numpy as np
import xarray as xr
from scipy import ndimage

from store import annotation as ann
from store.schema import (
    ANNOTATION,
    D_MODEL,
    GRID_COL,
    GRID_ROW,
    HEAD_DIM,
    HIDDEN,
    IMAGE_HEIGHT,
    IMAGE_INDEX,
    IMAGE_PART,
    IMAGE_WIDTH,
    KEYS,
    KEYS_PREROPE,
    KIND,
    KV_HEAD,
    LAYER,
    STREAM,
    TOKEN_BOX,
    VALUES,
    ImagePart,
    SampleStatus,
    TokenKind,
)

PER_HEAD_ARRAYS = (KEYS, VALUES, KEYS_PREROPE)
FEATURE = "feature"  # the vector dimension of `as_units` (head_dim, or d_model for hidden states)


@dataclass(frozen=True)
class ImageTokens:
    """The image tokens of one image of one sample, in one view (part), newline tokens excluded.

    positions: (n,) indices on the store's token axis; grid: (n, 2) row, col in the view's token grid;
    boxes: (n, 4) x0, y0, x1, y1 in [0, 1] of the original image; image_size: (height, width) pixels.
    """

    sample: int
    image: int
    part: int
    positions: np.ndarray
    grid: np.ndarray
    boxes: np.ndarray
    image_size: tuple[int, int]

    @property
    def centres(self) -> np.ndarray:
        """(n, 2) token centres (x, y) in [0, 1] of the original image."""
        return np.stack([(self.boxes[:, 0] + self.boxes[:, 2]) / 2, (self.boxes[:, 1] + self.boxes[:, 3]) / 2], axis=1)

    @property
    def grid_shape(self) -> tuple[int, int]:
        return int(self.grid[:, 0].max()) + 1, int(self.grid[:, 1].max()) + 1


def captured_samples(ds: xr.Dataset) -> np.ndarray:
    """Indices of the samples that were captured (not skipped or pending)."""
    return np.flatnonzero(ds.status.values == SampleStatus.CAPTURED)


def sample_annotation(ds: xr.Dataset, sample: int) -> dict:
    """The JSON annotation a sample was captured with (dataset ids, captions, objects, keypoints, ...)."""
    return ann.parse(str(ds[ANNOTATION].values[sample]))


def n_images(ds: xr.Dataset, sample: int) -> int:
    """How many images the sample's prompt held."""
    return int((ds.image_height.values[sample] > 0).sum())


TOKEN_FIELDS = [KIND, IMAGE_INDEX, IMAGE_PART, GRID_ROW, GRID_COL, TOKEN_BOX, IMAGE_HEIGHT, IMAGE_WIDTH]


def image_tokens(ds: xr.Dataset, sample: int, image: int = 0, part: str | int = "auto") -> ImageTokens:
    """The tokens of image `image` of `sample`. `part`: "base", "grid", or "auto" (the high-resolution
    grid where the layout has one, else the base view)."""
    return image_tokens_of(ds, [(sample, image)], part)[0]


def image_tokens_of(ds: xr.Dataset, images: list[tuple[int, int]], part: str | int = "auto") -> list[ImageTokens]:
    """`image_tokens` of several (sample, image) at once: one read of the token table for all of them."""
    samples = sorted({sample for sample, _ in images})
    table = ds[TOKEN_FIELDS].isel(sample=samples).compute()
    return [_image_tokens(table.isel(sample=samples.index(sample)), sample, image, part) for sample, image in images]


def _image_tokens(fields: xr.Dataset, sample: int, image: int, part: str | int) -> ImageTokens:
    mine = (fields.kind.values == TokenKind.IMAGE) & (fields.image_index.values == image)
    if not mine.any():
        raise ValueError(f"sample {sample} has no tokens of image {image}")
    parts = fields.image_part.values
    if part == "auto":
        part = ImagePart.GRID if (mine & (parts == ImagePart.GRID)).any() else ImagePart.BASE
    elif isinstance(part, str):
        part = ImagePart[part.upper()]
    mine &= parts == part
    if not mine.any():
        raise ValueError(f"sample {sample} image {image} has no tokens in part {ImagePart(part).name.lower()}")
    positions = np.flatnonzero(mine)
    height = int(fields.image_height.values[image])
    width = int(fields.image_width.values[image])
    grid = np.stack([fields.grid_row.values[positions], fields.grid_col.values[positions]], axis=1).astype(np.int64)
    return ImageTokens(sample, image, int(part), positions, grid, fields.token_box.values[positions].astype(np.float64),
                       (height, width))


def unit_vectors(ds: xr.Dataset, array: str, tokens: ImageTokens, layers: list[int] | None = None) -> xr.DataArray:
    """Vectors of `tokens` as (layer, kv_head, token, feature) float32, loaded.

    Per-head arrays (keys, values, keys_prerope) keep their KV heads; `hidden` (per stream) gets one
    pseudo-head, and its `layer` coordinate holds stream indices (stream i = input of layer i).
    """
    return unit_vectors_of(ds, array, [tokens], layers)[0]


def unit_vectors_of(ds: xr.Dataset, array: str, token_sets: list[ImageTokens],
                    layers: list[int] | None = None) -> list[xr.DataArray]:
    """`unit_vectors` of several token sets, read in one dask computation (each computation costs tens of ms)."""
    data = as_units(ds[array])
    if layers is not None:
        data = data.sel(layer=layers)
    lazy = [data.isel(sample=tokens.sample, token=tokens.positions).astype(np.float32) for tokens in token_sets]
    return list(dask.compute(*lazy))


def as_units(array: xr.DataArray) -> xr.DataArray:
    """`array` with dims (sample, layer, kv_head, token, feature), whatever array of the store it is."""
    if array.name in PER_HEAD_ARRAYS:
        return array.rename({HEAD_DIM: FEATURE})
    if array.name == HIDDEN:
        return array.rename({STREAM: LAYER, D_MODEL: FEATURE}).expand_dims({KV_HEAD: [0]}, axis=2)
    raise ValueError(f"array {array.name!r} has no per-token vectors (use keys, values, keys_prerope or hidden)")


def token_at(tokens: ImageTokens, x: float, y: float) -> int:
    """Index (into `tokens`) of the token whose box contains the normalised point (x, y); -1 if none
    does (e.g. a point in a centre-cropped-away strip)."""
    b = tokens.boxes
    inside = (b[:, 0] <= x) & (x <= b[:, 2]) & (b[:, 1] <= y) & (y <= b[:, 3]) & (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    if not inside.any():
        return -1
    candidates = np.flatnonzero(inside)
    centres = tokens.centres[candidates]
    return int(candidates[np.argmin((centres[:, 0] - x) ** 2 + (centres[:, 1] - y) ** 2)])


def labels_to_tokens(tokens: ImageTokens, label_map: np.ndarray, n_labels: int) -> np.ndarray:
    """(n, n_labels) fraction of each token's box covered by each label of an (H, W) integer map."""
    height, width = label_map.shape
    out = np.zeros((len(tokens.positions), n_labels), np.float64)
    for i, (x0, y0, x1, y1) in enumerate(tokens.boxes):
        c0, c1 = int(np.floor(x0 * width)), max(int(np.ceil(x1 * width)), int(np.floor(x0 * width)) + 1)
        r0, r1 = int(np.floor(y0 * height)), max(int(np.ceil(y1 * height)), int(np.floor(y0 * height)) + 1)
        patch = label_map[r0:min(r1, height), c0:min(c1, width)]
        if patch.size:
            out[i] = np.bincount(patch.ravel(), minlength=n_labels)[:n_labels] / patch.size
    return out


def tokens_to_pixels(tokens: ImageTokens, values: np.ndarray, height: int | None = None,
                     width: int | None = None, order: int = 1) -> np.ndarray:
    """Per-token values (n, k) upsampled to the image's pixels: (H, W, k); `order` 1 bilinear, 0 nearest.

    The token grid is placed where its boxes lie in the image, so anyres grids (letterbox removed) and
    centre crops land on the right pixels; pixels outside the grid take the nearest grid value.
    """
    height, width = height or tokens.image_size[0], width or tokens.image_size[1]
    rows, cols = tokens.grid_shape
    grid = np.zeros((rows, cols, values.shape[1]), np.float64)
    grid[tokens.grid[:, 0], tokens.grid[:, 1]] = values
    x0, y0 = tokens.boxes[:, 0].min(), tokens.boxes[:, 1].min()
    x1, y1 = tokens.boxes[:, 2].max(), tokens.boxes[:, 3].max()
    # pixel centre -> continuous grid coordinate (token centres sit at integer coordinates)
    ys = ((np.arange(height) + 0.5) / height - y0) / max(y1 - y0, 1e-12) * rows - 0.5
    xs = ((np.arange(width) + 0.5) / width - x0) / max(x1 - x0, 1e-12) * cols - 0.5
    yy, xx = np.meshgrid(np.clip(ys, 0, rows - 1), np.clip(xs, 0, cols - 1), indexing="ij")
    return np.stack([ndimage.map_coordinates(grid[..., k], [yy, xx], order=order, mode="nearest")
                     for k in range(values.shape[1])], axis=-1)
