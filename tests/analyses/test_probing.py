"""Probing on planted tokens: separable by construction -> mIoU near 1; random tokens -> near chance."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from analyses.probing import ChoiceTrial, choice_trials, linear_probe_segmentation, paired_choice, text_segmentation
from store.schema import ImagePart, SampleStatus, TokenKind

GRID, PIXELS, DIM = 6, 60, 8


def fake_store(n_samples: int, seed: int = 0, n_images: int = 1, text_tokens: int = 2):
    """A store-shaped Dataset: per image a 6 x 6 token grid over 60 x 60 pixels, then `text_tokens` text tokens.
    Layer 0 / head 0 values are +u on the planted foreground tokens and -u elsewhere (plus noise); every other
    (layer, head) is noise. Returns the Dataset and each sample's image-0 foreground mask."""
    rng = np.random.RandomState(seed)
    n_image_tokens = GRID * GRID
    n_tokens = n_images * n_image_tokens + text_tokens
    values = rng.normal(0, 1, (n_samples, 2, 2, n_tokens, DIM)).astype(np.float32)
    u = rng.normal(0, 1, DIM)
    masks = []
    for sample in range(n_samples):
        r0, c0 = rng.randint(0, 3, size=2)
        fg_tokens = np.zeros((GRID, GRID), bool)
        fg_tokens[r0:r0 + 3, c0:c0 + 3] = True
        masks.append(np.kron(fg_tokens, np.ones((10, 10), bool)))
        sign = np.where(fg_tokens.ravel(), 1.0, -1.0)
        values[sample, 0, 0, :n_image_tokens] = sign[:, None] * u + rng.normal(0, 0.3, (n_image_tokens, DIM))
    r, c = np.divmod(np.arange(n_image_tokens), GRID)
    box = np.stack([c / GRID, r / GRID, (c + 1) / GRID, (r + 1) / GRID], axis=1)
    kind = np.array([TokenKind.IMAGE] * (n_images * n_image_tokens) + [TokenKind.TEXT] * text_tokens, np.int8)
    image_index = np.concatenate([np.full(n_image_tokens, i) for i in range(n_images)] + [np.full(text_tokens, -1)])
    tile = lambda a, fill: np.concatenate([np.tile(a, (n_images,) + (1,) * (a.ndim - 1)),  # noqa: E731
                                          np.full((text_tokens,) + a.shape[1:], fill)])
    ds = xr.Dataset(
        {
            "values": (("sample", "layer", "kv_head", "token", "head_dim"), values),
            "kind": (("sample", "token"), np.tile(kind, (n_samples, 1))),
            "image_index": (("sample", "token"), np.tile(image_index, (n_samples, 1)).astype(np.int16)),
            "image_part": (("sample", "token"), np.tile(tile(np.full(n_image_tokens, ImagePart.BASE), -1), (n_samples, 1))),
            "grid_row": (("sample", "token"), np.tile(tile(r, -1), (n_samples, 1))),
            "grid_col": (("sample", "token"), np.tile(tile(c, -1), (n_samples, 1))),
            "token_box": (("sample", "token", "box_coord"), np.tile(tile(box, np.nan), (n_samples, 1, 1))),
            "image_height": (("sample", "image"), np.full((n_samples, n_images), PIXELS)),
            "image_width": (("sample", "image"), np.full((n_samples, n_images), PIXELS)),
            "status": (("sample",), np.full(n_samples, SampleStatus.CAPTURED, np.int8)),
            "annotation": (("sample",), np.array(["{}"] * n_samples, dtype=object)),
        },
        coords={"layer": [0, 1]},
    )
    return ds, masks


def test_planted_linear_probe():
    ds, masks = fake_store(10)
    result = linear_probe_segmentation(ds, support=[0, 1], query=list(range(2, 10)), truth=lambda s: masks[s])
    assert result.miou.dims == ("layer", "kv_head")
    assert float(result.miou.sel(layer=0, kv_head=0)) > 0.99
    noise = result.miou.values.ravel()[1:]
    assert (noise < 0.7).all()  # chance: the probe cannot beat guessing on noise


def test_text_token_segmentation():
    ds, masks = fake_store(6, seed=1)
    u_direction = ds["values"].values[0, 0, 0, :36][masks[0][::10, ::10].ravel()].mean(axis=0)
    text_values = ds["values"].values.copy()
    text_values[:, 0, 0, -1] = u_direction  # the class name's final text token points at the foreground
    text_ds = ds.copy()
    text_ds["values"] = (("sample", "layer", "kv_head", "token", "head_dim"), text_values)
    result = text_segmentation(ds, list(range(6)), text_ds, lambda s: 0, lambda s: masks[s])
    assert float(result.miou.sel(layer=0, kv_head=0)) > 0.99
    assert result.miou.values.ravel()[1:].max() < 0.8


def test_paired_choice():
    ds, _ = fake_store(4, seed=2, n_images=3)
    values = ds["values"].values
    values[:, :, :, 36:72] = values[:, :, :, 0:36] + 0.01  # candidate 1 repeats the reference
    ds["values"] = (ds["values"].dims, values)
    annotation = np.array([json.dumps({"answer": 1})] * 4, dtype=object)
    ds["annotation"] = (("sample",), annotation)
    trials = choice_trials(ds)
    assert trials[0] == ChoiceTrial((0, 0), [(0, 1), (0, 2)], 0)
    assert (paired_choice(ds, trials).accuracy.values == 1.0).all()
    with pytest.raises(ValueError, match="no choice trials"):
        paired_choice(ds, [])
