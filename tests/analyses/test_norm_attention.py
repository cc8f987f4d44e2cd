"""Attention rows recomputed at capture equal eager attention; norm-based attention equals a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr
from transformers import AutoModelForImageTextToText

import store.reader
from analyses.norm_attention import by_kind, norm_based_attention, share_intervals
from capture.datasets import load_image, open_dataset
from capture.loading import open_model, resolve_model
from capture.run import CaptureOptions, run_capture


@pytest.mark.parametrize("model", ["tiny-qwen2.5-vl", "tiny-llava-1.5"])
def test_attention_rows_and_norms_equal_eager_attention(model, synthetic_root, tmp_path):
    out = tmp_path / "att.zarr"
    run_capture(CaptureOptions(model=model, data_root=synthetic_root, limit=2, out=out, dtype="fp32", attention_last=True,
                               progress=False))
    ds = store.reader.open(out)
    lens = store.reader.open_lens(out)
    result = norm_based_attention(ds, lens)
    resolved = resolve_model(model)
    opened = open_model(resolved, "fp32", "cpu")
    eager = AutoModelForImageTextToText.from_pretrained(resolved.local_dir, dtype=torch.float32,
                                                        attn_implementation="eager").eval()
    decoder = opened.adapter.decoder(eager)
    records = open_dataset("synthetic-coco", synthetic_root, None, 2).records
    for sample, record in enumerate(records):
        inputs = opened.adapter.processor_inputs(opened.processor, str(ds.prompt.values[sample]),
                                                 [load_image(record.image_paths[0])])
        with torch.inference_mode():
            output = eager(**inputs, output_attentions=True, use_cache=True)
        n = int(ds.n_tokens[sample])
        for layer in range(len(decoder.layers)):
            row = output.attentions[layer][0, :, -1].numpy()  # (heads, seq)
            stored = ds.attention_last.isel(sample=sample, layer=layer).values[:, :n]
            np.testing.assert_allclose(stored, row, atol=1e-6, rtol=1e-5)
            # direct: sum over heads of alpha_hj * v_j @ W_O,h^T, by torch on the model's own tensors
            values = output.past_key_values.layers[layer].values[0]  # (kv, seq, hd)
            heads, head_dim = row.shape[0], values.shape[-1]
            group = heads // values.shape[0]
            weight = decoder.layers[layer].self_attn.o_proj.weight.detach()
            contribution = sum(
                torch.from_numpy(row[h])[:, None] * values[h // group] @ weight[:, h * head_dim:(h + 1) * head_dim].T
                for h in range(heads)
            )
            np.testing.assert_allclose(result.norm.isel(sample=sample, layer=layer).values[:n],
                                       contribution.norm(dim=-1).numpy(), rtol=1e-4, atol=1e-6)
            np.testing.assert_allclose(result.weight.isel(sample=sample, layer=layer).values[:n], row.mean(0),
                                       rtol=1e-5)
    shares = by_kind(result, ds.kind)
    for share in ("norm_share", "weight_share", "token_share"):  # per sample and layer, over the kinds
        np.testing.assert_allclose(shares[share].sum("kind").values, 1.0, rtol=1e-5)


def test_store_without_rows_is_refused(captured_store):
    with pytest.raises(ValueError, match="--attention-last"):
        norm_based_attention(store.reader.open(captured_store), store.reader.open_lens(captured_store))


def hand_built(n_tokens: int = 3, seq_len: int = 3) -> tuple[xr.Dataset, xr.Dataset]:
    """One sample, one layer, two query heads on one KV head of width 1, d_model 2, o_proj the identity: token j
    contributes v_j * (alpha_0j, alpha_1j). Tokens: text, image, image."""
    attention = np.array([[0.5, 0.25, 0.25], [0.1, 0.3, 0.6]], np.float32)  # (head, token), rows sum to 1
    values = np.array([2.0, 1.0, -4.0], np.float32)
    ds = xr.Dataset({
        "attention_last": (("sample", "layer", "head", "token"), attention[None, None, :, :n_tokens]),
        "values": (("sample", "layer", "kv_head", "token", "head_dim"), values[None, None, None, :n_tokens, None]),
        "kind": (("sample", "token"), np.array([[0, 2, 2][:n_tokens]], np.int8)),
        "n_tokens": (("sample",), np.array([n_tokens])), "seq_len": (("sample",), np.array([seq_len])),
    }, coords={"layer": [5]})
    lens = xr.Dataset({"o_proj_weight": (("layer", "d_model", "attn_dim"), np.eye(2, dtype=np.float32)[None])},
                      coords={"layer": [5]})
    return ds, lens


def test_shares_on_a_hand_built_row():
    ds, lens = hand_built()
    result = norm_based_attention(ds, lens)
    norms = [2 * np.hypot(0.5, 0.1), 1 * np.hypot(0.25, 0.3), 4 * np.hypot(0.25, 0.6)]  # |v_j| |(a_0j, a_1j)|
    np.testing.assert_allclose(result.norm.values[0, 0], norms, rtol=1e-6)
    shares = by_kind(result, ds.kind).isel(sample=0, layer=0)
    np.testing.assert_allclose(shares.norm_share.sel(kind="image"), (norms[1] + norms[2]) / sum(norms), rtol=1e-6)
    # head-averaged weights: image gets ((0.25 + 0.25) + (0.3 + 0.6)) / 2
    np.testing.assert_allclose(shares.weight_share.sel(kind="image"), 0.7, rtol=1e-6)
    np.testing.assert_allclose(shares.weight_share.sel(kind="text"), 0.3, rtol=1e-6)
    np.testing.assert_allclose(shares.token_share.sel(kind="image"), 2 / 3)
    curve = share_intervals(by_kind(result, ds.kind))["image"]["weight_share"]
    assert float(curve.estimate[0]) == pytest.approx(0.7) and int(curve.n[0]) == 1


def test_partial_rows_are_refused():
    ds, lens = hand_built(n_tokens=2, seq_len=3)  # e.g. --tokens image,last: the row's other tokens are missing
    with pytest.raises(ValueError, match="stores 2 of its 3 positions"):
        norm_based_attention(ds, lens)
