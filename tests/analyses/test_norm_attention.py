"""Attention rows recomputed at capture equal eager attention; norm-based attention equals a direct computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForImageTextToText

import store.reader
from analyses.norm_attention import by_kind, norm_based_attention
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
            np.testing.assert_allclose(result.weight.isel(sample=sample, layer=layer).values[:n], row.sum(0), rtol=1e-5)
    shares = by_kind(result, ds.kind)
    np.testing.assert_allclose(shares.norm_share.sum("kind").values, 1.0, rtol=1e-5)


def test_store_without_rows_is_refused(captured_store):
    with pytest.raises(ValueError, match="--attention-last"):
        norm_based_attention(store.reader.open(captured_store), store.reader.open_lens(captured_store))
