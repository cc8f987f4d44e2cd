"""Inter-modal cosine similarity curves (Wei ch. 4.1): per layer, the mean cosine similarity between every
image-token and every text-token hidden state of a sample, with its spread over samples.

mean_ij cos(v_i, t_j) = (mean_i v_i/|v_i|) . (mean_j t_j/|t_j|), so each sample costs two means per stream.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analyses.tokens import captured_samples
from store.schema import D_MODEL, SAMPLE, TOKEN, TokenKind

ALL_TEXT = "all"  # --text all: every text token
TEXT_SETS = ("after_image", ALL_TEXT)


def text_mask(ds: xr.Dataset, text: str = "after_image") -> xr.DataArray:
    """Text tokens to compare with: "after_image" (the instruction and the template after the last image
    token), or "all" text tokens. Special tokens are never included."""
    is_text = ds.kind == TokenKind.TEXT
    if text == ALL_TEXT:
        return is_text
    if text != "after_image":
        raise ValueError(f"unknown text set {text!r} (choose from {', '.join(TEXT_SETS)})")
    is_image = ds.kind.isin([TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE])
    index = xr.DataArray(np.arange(ds.sizes[TOKEN]), dims=TOKEN)
    last_image = index.where(is_image).max(TOKEN)
    return is_text & (index > last_image)


def cosine_curve(ds: xr.Dataset, text: str = "after_image") -> xr.DataArray:
    """Per sample and stream, the mean image-text cosine similarity of hidden states: (sample, stream), lazy.

    Samples without image tokens or without text tokens are NaN.
    """
    samples = captured_samples(ds)
    ds = ds.isel(sample=samples)
    hidden = ds.hidden.astype(np.float32)
    unit = hidden / np.maximum(np.sqrt((hidden**2).sum(D_MODEL)), 1e-12)
    image = ds.kind == TokenKind.IMAGE
    texts = text_mask(ds, text)
    image_mean = unit.where(image).mean(TOKEN)
    text_mean = unit.where(texts).mean(TOKEN)
    return (image_mean * text_mean).sum(D_MODEL, min_count=1).rename("cosine")


def summarise(curve: xr.DataArray) -> xr.Dataset:
    """Mean, standard deviation and quartiles over samples of a (sample, stream) curve (loaded here)."""
    curve = curve.load()
    return xr.Dataset({
        "mean": curve.mean(SAMPLE), "std": curve.std(SAMPLE),
        "q25": curve.quantile(0.25, SAMPLE).drop_vars("quantile"),
        "q75": curve.quantile(0.75, SAMPLE).drop_vars("quantile"),
        "n_samples": curve.notnull().sum(SAMPLE),
    })
