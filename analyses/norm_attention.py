"""Norm-based attention from the last position (Wei ch. 4.2, after Kobayashi et al. 2020).

The attention weight alone ignores how much a token's value actually moves the output. Token j's contribution
to the last position's attention output at a layer is sum_h alpha_hj * (v_{kv(h),j} @ W_O,h^T), with W_O,h the
slice of o_proj that reads head h; its norm is the norm-based attention. Needs a capture with
`--attention-last` (attention rows and o_proj weights) that stores every position (`--tokens all`): a share is a
share of the whole attention row, and a store holding part of the row cannot say what the rest received.

Shares per token kind (`by_kind`) are computed per sample and sum to 1 over kinds at every layer: the norm share
(norm of the kind's contributions over the sum of all norms), the weight share (attention weights averaged over
heads, summed over the kind's tokens) and, as the baseline of uniform attention, the kind's share of the tokens.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from analyses import intervals
from store.schema import ATTENTION_LAST, KIND, LAYER, LENS_O_PROJ, N_TOKENS, SAMPLE, SEQ_LEN, TOKEN, VALUES, TokenKind

SHARES = ("norm_share", "weight_share", "token_share")  # the variables of by_kind
KINDS = (TokenKind.TEXT, TokenKind.SPECIAL, TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE)  # every kind of a real token


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


def check_whole_rows(ds: xr.Dataset, samples: list[int]) -> None:
    """ValueError unless every sample stores all positions of its sequence (the whole attention row)."""
    stored, length = ds[N_TOKENS].values[samples], ds[SEQ_LEN].values[samples]
    partial = [s for s, n, total in zip(samples, stored, length, strict=True) if n != total]
    if partial:
        raise ValueError(f"sample {partial[0]} stores {int(ds[N_TOKENS].values[partial[0]])} of its "
                         f"{int(ds[SEQ_LEN].values[partial[0]])} positions: attention shares need the whole row "
                         "(capture with --tokens all)")


def norm_based_attention(ds: xr.Dataset, lens: xr.Dataset, samples: list[int] | None = None) -> xr.Dataset:
    """Per (sample, layer, token): `norm` (norm-based attention of the last position) and `weight` (the attention
    weight averaged over heads, for comparison), NaN on padding slots. ValueError for a store without attention
    rows or one that does not keep every position."""
    if ATTENTION_LAST not in ds or LENS_O_PROJ not in lens:
        raise ValueError("the store has no attention rows: capture with --attention-last")
    samples = list(range(ds.sizes[SAMPLE])) if samples is None else samples
    check_whole_rows(ds, samples)
    o_proj = {int(layer): np.asarray(lens[LENS_O_PROJ].sel(layer=layer).values, np.float32) for layer in ds.layer.values}
    norms = np.full((len(samples), ds.sizes[LAYER], ds.sizes[TOKEN]), np.nan, np.float32)
    weights = np.full_like(norms, np.nan)
    for row, sample in enumerate(samples):
        n = int(ds.n_tokens.values[sample])
        attention = np.asarray(ds[ATTENTION_LAST].isel(sample=sample, token=slice(0, n)).values, np.float32)
        values = np.asarray(ds[VALUES].isel(sample=sample, token=slice(0, n)).values, np.float32)
        for li, layer in enumerate(ds.layer.values):
            norms[row, li, :n] = token_contributions(attention[li], values[li], o_proj[int(layer)])
            weights[row, li, :n] = attention[li].mean(axis=0)
    coords = {SAMPLE: samples, LAYER: ds.layer.values}
    dims = (SAMPLE, LAYER, TOKEN)
    return xr.Dataset({"norm": (dims, norms), "weight": (dims, weights)}, coords=coords)


def by_kind(result: xr.Dataset, kind: xr.DataArray) -> xr.Dataset:
    """Per (kind, sample, layer): `norm_share` and `weight_share` of the last position's attention going to tokens of
    each kind, and `token_share`, the kind's share of the tokens (uniform attention). Each sums to 1 over kinds."""
    kinds = kind.sel(sample=result.sample).compute()  # a small table; `result` is in memory too
    tokens = (kinds != TokenKind.PAD).sum(TOKEN)
    shares = []
    for token_kind in KINDS:
        mask = kinds == token_kind
        shares.append(xr.Dataset({
            "norm_share": result.norm.where(mask).sum(TOKEN) / result.norm.sum(TOKEN),
            "weight_share": result.weight.where(mask).sum(TOKEN),
            "token_share": (mask.sum(TOKEN) / tokens).broadcast_like(result.layer).astype(np.float64),
        }))
    names = [k.name.lower() for k in KINDS]
    return xr.concat(shares, dim=xr.DataArray(names, dims=KIND, name=KIND)).transpose(KIND, SAMPLE, LAYER)


def share_intervals(shares: xr.Dataset, seed: int = 0) -> dict[str, dict[str, xr.Dataset]]:
    """kind -> share -> its mean over samples per layer with a bootstrap interval over samples (`intervals.stack`)."""
    out: dict[str, dict[str, xr.Dataset]] = {}
    for name in shares.kind.values:
        one = shares.sel(kind=name)
        out[str(name)] = {share: intervals.stack([intervals.bootstrap_mean(one[share].sel(layer=layer).values, seed=seed)
                                                  for layer in one.layer.values], LAYER, one.layer.values)
                          for share in SHARES}
    return out
