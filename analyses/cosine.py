"""Inter-modal cosine similarity curves (Wei ch. 4.1): per layer, the mean cosine similarity between every
image-token and every text-token hidden state of a sample, with its spread over samples.

Text tokens are the user's own text by default (the token table's `user_text`: the instruction, never the chat
template), so an empty prompt has no curve rather than a curve against template tokens; the template's text
tokens are a set of their own. Two baselines tell how much of a cosine any two tokens share (hidden states are
anisotropic): the mean cosine between different image tokens and between different text tokens of a sample, and
the same curves after subtracting, per stream, the mean hidden state of all stored tokens of the store.

mean_ij cos(v_i, t_j) = (sum_i v_i/|v_i|) . (sum_j t_j/|t_j|) / (n_v n_t), and over distinct pairs of one set
(|sum_i v_i/|v_i||^2 - n_v) / (n_v (n_v - 1)), so each sample costs one sum of unit vectors per set and stream.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analyses import intervals
from analyses.tokens import captured_samples
from store.schema import D_MODEL, SAMPLE, STREAM, TOKEN, USER_TEXT, TokenKind

USER, TEMPLATE, AFTER_IMAGE, ALL_TEXT = "user", "template", "after_image", "all"
TEXT_SETS = (USER, TEMPLATE, AFTER_IMAGE, ALL_TEXT)
CURVES = ("image_text", "image_image", "text_text")  # the variables of `curves`


def text_mask(ds: xr.Dataset, text: str = USER) -> xr.DataArray:
    """(sample, token) text tokens to compare with: "user" (the user's own text), "template" (text tokens that are
    not the user's: role names, system prompt, ...), "after_image" (text tokens after the last image token) or
    "all" text tokens. Special tokens are never included."""
    is_text = ds.kind == TokenKind.TEXT
    if text in (USER, TEMPLATE):
        if USER_TEXT not in ds:
            raise ValueError("this store does not mark the user's text tokens (captured before the token table had "
                             f"{USER_TEXT}): capture it again, or compare with --text {AFTER_IMAGE}")
        return is_text & (ds[USER_TEXT] if text == USER else ~ds[USER_TEXT])
    if text == ALL_TEXT:
        return is_text
    if text != AFTER_IMAGE:
        raise ValueError(f"unknown text set {text!r} (choose from {', '.join(TEXT_SETS)})")
    is_image = ds.kind.isin([TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE])
    index = xr.DataArray(np.arange(ds.sizes[TOKEN]), dims=TOKEN)
    last_image = index.where(is_image).max(TOKEN)
    return is_text & (index > last_image)


def mean_hidden(ds: xr.Dataset) -> xr.DataArray:
    """(stream, d_model) mean hidden state over every stored token of the captured samples, lazy."""
    ds = ds.isel(sample=captured_samples(ds))
    return ds.hidden.astype(np.float32).where(ds.kind != TokenKind.PAD).mean((SAMPLE, TOKEN))


def curves(ds: xr.Dataset, text: str = USER, centre: xr.DataArray | None = None) -> xr.Dataset:
    """Per captured sample and stream, lazy: `image_text`, the mean cosine over (image token, text token) pairs;
    `image_image` and `text_text`, the mean cosine over pairs of distinct tokens of one set. With `centre`
    ((stream, d_model), e.g. `mean_hidden`) it is subtracted from every hidden state first. NaN where a set is
    empty (or, within a set, has one token)."""
    ds = ds.isel(sample=captured_samples(ds))
    hidden = ds.hidden.astype(np.float32)
    if centre is not None:
        hidden = hidden - centre
    unit = hidden / np.maximum(np.sqrt((hidden**2).sum(D_MODEL)), 1e-12)
    masks = (ds.kind == TokenKind.IMAGE, text_mask(ds, text))
    sums = [unit.where(mask).sum(TOKEN) for mask in masks]  # (sample, stream, d_model) per set
    counts = [mask.sum(TOKEN).astype(np.float64) for mask in masks]
    pairs = counts[0] * counts[1]
    out = {"image_text": (sums[0] * sums[1]).sum(D_MODEL) / pairs.where(pairs > 0)}
    for name, total, count in (("image_image", sums[0], counts[0]), ("text_text", sums[1], counts[1])):
        within = count * (count - 1)
        out[name] = ((total**2).sum(D_MODEL) - count) / within.where(within > 0)
    return xr.Dataset(out).transpose(SAMPLE, STREAM)


def cosine_curve(ds: xr.Dataset, text: str = USER) -> xr.DataArray:
    """Per sample and stream, the mean image-text cosine similarity of hidden states: (sample, stream), lazy."""
    return curves(ds, text).image_text.rename("cosine")


def summarise(curve: xr.DataArray, seed: int = 0) -> xr.Dataset:
    """Per stream over samples (loaded here): mean with its bootstrap interval (`low`, `high`), standard deviation,
    quartiles and the number of samples with a value."""
    curve = curve.load()
    mean = intervals.stack([intervals.bootstrap_mean(curve.sel({STREAM: s}).values, seed=seed)
                            for s in curve[STREAM].values], STREAM, curve[STREAM].values)
    return xr.Dataset({
        "mean": curve.mean(SAMPLE), "low": mean["low"], "high": mean["high"], "std": curve.std(SAMPLE),
        "q25": curve.quantile(0.25, SAMPLE).drop_vars("quantile"),
        "q75": curve.quantile(0.75, SAMPLE).drop_vars("quantile"),
        "n_samples": curve.notnull().sum(SAMPLE),
    })
