"""Hidden-state norms per layer and token kind, and high-norm ("register") image tokens (Neo et al. §3).

Pure functions over a store's xarray Dataset; dask does the reading, nothing loads a model.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from store.schema import D_MODEL, KIND, SAMPLE, TOKEN, TokenKind


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
