"""Hidden-state norms per layer and token kind, and high-norm ("register") image tokens (Neo et al. §3), with
95% intervals over images.

Pure functions over a store's xarray Dataset; dask does the reading, nothing loads a model.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analyses import intervals
from analyses.grid_intervals import pooled_ratios
from store.schema import D_MODEL, KIND, SAMPLE, STREAM, TOKEN, TokenKind


def hidden_norms(ds: xr.Dataset) -> xr.DataArray:
    """L2 norm of every stored hidden state: (sample, stream, token) float32, NaN on padding slots."""
    norms = np.sqrt((ds.hidden.astype(np.float32) ** 2).sum(D_MODEL))
    return norms.where(ds.kind != TokenKind.PAD).rename("hidden_norm")


def mean_norm_by_kind(norms: xr.DataArray, kind: xr.DataArray) -> xr.DataArray:
    """Mean hidden-state norm per (stream, token kind); kinds absent from the store are dropped."""
    means = {}
    for token_kind in TokenKind:
        if token_kind == TokenKind.PAD:
            continue
        selected = norms.where(kind == token_kind)
        if bool(selected.notnull().any()):
            means[token_kind.name.lower()] = selected.mean((SAMPLE, TOKEN))
    return xr.concat(list(means.values()), dim=xr.DataArray(list(means), dims=KIND, name=KIND)).rename("mean_norm")


def register_fraction(norms: xr.DataArray, kind: xr.DataArray, n_std: float = 2.0) -> xr.DataArray:
    """Per stream, the fraction of image tokens whose norm exceeds mean + `n_std` std of that sample's
    image tokens at that stream (the register-token criterion of Neo et al.)."""
    image = norms.where(kind == TokenKind.IMAGE)
    threshold = image.mean(TOKEN) + n_std * image.std(TOKEN)
    above = (image > threshold).where(image.notnull())
    return above.mean((SAMPLE, TOKEN)).rename("register_fraction")


def per_image_counts(norms: xr.DataArray, kind: xr.DataArray, n_std: float = 2.0) -> xr.Dataset:
    """The sums behind `mean_norm_by_kind` and `register_fraction`, per image (the units of their intervals):
    `norm_sum`, `norm_count` (sample, stream, kind) and `register_count`, `image_count` (sample, stream)."""
    sums, counts, kinds = [], [], []
    for token_kind in TokenKind:
        if token_kind == TokenKind.PAD:
            continue
        selected = norms.where(kind == token_kind)
        sums.append(selected.sum(TOKEN))
        counts.append(selected.count(TOKEN))
        kinds.append(token_kind.name.lower())
    image = norms.where(kind == TokenKind.IMAGE)
    above = image > image.mean(TOKEN) + n_std * image.std(TOKEN)
    kinds_dim = xr.DataArray(kinds, dims=KIND, name=KIND)
    return xr.Dataset({"norm_sum": xr.concat(sums, dim=kinds_dim), "norm_count": xr.concat(counts, dim=kinds_dim),
                       "register_count": above.sum(TOKEN), "image_count": image.count(TOKEN)},
                      attrs={"n_std": n_std})


def with_intervals(counts: xr.Dataset) -> dict[str, xr.Dataset]:
    """Per stream, with a 95% interval resampling images (tokens pooled within each; `intervals.stack` form): the
    mean norm of each token kind present ("mean_norm:KIND") and the register fraction ("register_fraction")."""
    out = {}
    for token_kind in counts[KIND].values:
        count = counts.norm_count.sel({KIND: token_kind}).transpose(SAMPLE, STREAM).values
        if count.sum() == 0:
            continue
        total = counts.norm_sum.sel({KIND: token_kind}).transpose(SAMPLE, STREAM).values
        out[f"mean_norm:{token_kind}"] = _curve(total, count, counts[STREAM].values)
    out["register_fraction"] = _curve(counts.register_count.transpose(SAMPLE, STREAM).values,
                                      counts.image_count.transpose(SAMPLE, STREAM).values, counts[STREAM].values)
    return out


def _curve(numerators: np.ndarray, denominators: np.ndarray, streams: np.ndarray) -> xr.Dataset:
    """sum(numerators) / sum(denominators) over images (sample, stream), per stream, as an `intervals.stack` curve
    (`grid_intervals.pooled_ratios` when every image counts at every stream, as image tokens do)."""
    if (denominators == denominators[:, :1]).all():
        fields = pooled_ratios(numerators, denominators[:, 0])
        return xr.Dataset({name: (STREAM, np.asarray(fields[name])) for name in intervals.INTERVAL_FIELDS},
                          coords={STREAM: streams}, attrs={"interval": "bootstrap of a pooled ratio over units",
                                                           "confidence": intervals.CONFIDENCE})
    return intervals.stack([intervals.bootstrap_ratio(numerators[:, i], denominators[:, i]) for i in range(len(streams))],
                           STREAM, streams)
