"""Norm-based attention from the last position (Wei ch. 4.2, after Kobayashi et al. 2020).

The attention weight alone ignores how much a token's value actually moves the output. Token j's contribution
to the last position's attention output at a layer is sum_h alpha_hj * (v_{kv(h),j} @ W_O,h^T), with W_O,h the
slice of o_proj that reads head h; its norm is the norm-based attention. Needs a capture with
`--attention-last` (attention rows and o_proj weights) and the values of the tokens of interest.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from store.schema import ATTENTION_LAST, KIND, LAYER, LENS_O_PROJ, SAMPLE, TOKEN, VALUES, TokenKind


def token_contributions(attention: np.ndarray, values: np.ndarray, o_proj: np.ndarray) -> np.ndarray:
    """Norms (token,) of each token's contribution to one layer's attention output at the last position.

    attention: (heads, token) weights of the last query; values: (kv_heads, token, head_dim);
    o_proj: (d_model, heads * head_dim). Query head h reads KV head h // (heads / kv_heads).
    """
    heads = attention.shape[0]
    kv_heads, _, head_dim = values.shape
    per_head = values[np.arange(heads) // (heads // kv_heads)]  # (heads, token, head_dim)
    weighted = attention[:, :, None] * per_head  # alpha_hj v_{kv(h), j}
    stacked = weighted.transpose(1, 0, 2).reshape(weighted.shape[1], heads * head_dim)  # (token, heads*head_dim)
    return np.linalg.norm(stacked @ o_proj.T, axis=-1)


def norm_based_attention(ds: xr.Dataset, lens: xr.Dataset, samples: list[int] | None = None) -> xr.Dataset:
    """Per (sample, layer, token): `norm` (norm-based attention of the last position) and `weight` (the attention
    weight summed over heads, for comparison), NaN on padding slots."""
    if ATTENTION_LAST not in ds or LENS_O_PROJ not in lens:
        raise ValueError("the store has no attention rows: capture with --attention-last")
    samples = list(range(ds.sizes[SAMPLE])) if samples is None else samples
    o_proj = {int(layer): np.asarray(lens[LENS_O_PROJ].sel(layer=layer).values, np.float32) for layer in ds.layer.values}
    norms = np.full((len(samples), ds.sizes[LAYER], ds.sizes[TOKEN]), np.nan, np.float32)
    weights = np.full_like(norms, np.nan)
    for row, sample in enumerate(samples):
        n = int(ds.n_tokens.values[sample])
        attention = np.asarray(ds[ATTENTION_LAST].isel(sample=sample, token=slice(0, n)).values, np.float32)
        values = np.asarray(ds[VALUES].isel(sample=sample, token=slice(0, n)).values, np.float32)
        for li, layer in enumerate(ds.layer.values):
            norms[row, li, :n] = token_contributions(attention[li], values[li], o_proj[int(layer)])
            weights[row, li, :n] = attention[li].sum(axis=0)
    coords = {SAMPLE: samples, LAYER: ds.layer.values}
    dims = (SAMPLE, LAYER, TOKEN)
    return xr.Dataset({"norm": (dims, norms), "weight": (dims, weights)}, coords=coords)


def by_kind(result: xr.Dataset, kind: xr.DataArray) -> xr.Dataset:
    """Mean share of the last position's norm-based attention (and weight) going to each token kind, per layer."""
    kinds = kind.sel(sample=result.sample).compute()  # a small table; `result` is in memory too
    shares = {}
    total_norm = result.norm.sum(TOKEN)
    for token_kind in (TokenKind.TEXT, TokenKind.SPECIAL, TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE):
        mask = kinds == token_kind
        shares[token_kind.name.lower()] = xr.Dataset({
            "norm_share": (result.norm.where(mask).sum(TOKEN) / total_norm).mean(SAMPLE),
            "weight_share": result.weight.where(mask).sum(TOKEN).mean(SAMPLE),
        })
    return xr.concat(list(shares.values()), dim=xr.DataArray(list(shares), dims=KIND, name=KIND))
