"""A capture of dino-smollm2-llava equals, bit for bit, a plain transformers forward pass of the checkpoint
directory loaded as a released model (fp32; bf16 is ~90x slower than fp32 on AVX2-only CPUs, so not here)."""

from __future__ import annotations

import numpy as np
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.prompts import DEFAULT_PROMPT, build_prompt
from capture.run import CaptureOptions, run_capture

TOPK = 7


def plain_forward(model, inputs):
    """Output of a plain forward pass, plus each layer's MLP input and k_proj output (hooks that only read)."""
    decoder = model.model.language_model
    mlp_inputs, k_proj_outputs, handles = {}, {}, []
    for index, layer in enumerate(decoder.layers):
        handles.append(layer.mlp.register_forward_pre_hook(lambda m, a, i=index: mlp_inputs.__setitem__(i, a[0])))
        handles.append(layer.self_attn.k_proj.register_forward_hook(
            lambda m, a, o, i=index: k_proj_outputs.__setitem__(i, o)))
    with torch.inference_mode():
        output = model(**inputs, output_hidden_states=True, use_cache=True)
        coefficients = {i: layer.mlp.act_fn(layer.mlp.gate_proj(mlp_inputs[i])) * layer.mlp.up_proj(mlp_inputs[i])
                        for i, layer in enumerate(decoder.layers)}
    for handle in handles:
        handle.remove()
    return output, coefficients, k_proj_outputs


def test_capture_equals_plain_forward_and_the_directory_loads_as_a_checkpoint(real_model_dir, cache_home, tmp_path):
    from transformers import AutoModelForImageTextToText

    from capture.families.llava import LlavaAdapter

    out, out_by_path = tmp_path / "named.zarr", tmp_path / "by-path.zarr"
    options = dict(dataset="photos", limit=1, batch_size=1, dtype="fp32", keys_prerope=True, ffn_dense_tokens="image",
                   ffn_topk=TOPK, progress=False)
    run_capture(CaptureOptions(model="dino-smollm2-llava", out=out, **options))
    run_capture(CaptureOptions(model=str(real_model_dir), out=out_by_path, **options))

    model = AutoModelForImageTextToText.from_pretrained(real_model_dir).eval()  # as any released checkpoint
    processor = LlavaAdapter().load_processor(real_model_dir)
    ds, by_path = store.reader.open(out), store.reader.open(out_by_path)
    n_layers = len(model.model.language_model.layers)
    assert n_layers == 30 and ds.sizes["sample"] == 1
    records = open_dataset("photos", None, None, 1).records
    for index, record in enumerate(records):
        prompt = build_prompt(processor, "chat", DEFAULT_PROMPT, 1)
        inputs = dict(processor(text=[prompt], images=[[load_image(record.image_paths[0])]], return_tensors="pt"))
        output, coefficients, k_proj = plain_forward(model, inputs)
        sample, sample_by_path = ds.isel(sample=index).compute(), by_path.isel(sample=index).compute()
        n = int(sample.n_tokens)
        assert n == inputs["input_ids"].shape[1] == 256 + 35
        assert (sample.token_id.values[:n] == inputs["input_ids"][0].numpy()).all()
        image = inputs["input_ids"][0].numpy() == 16
        assert np.array_equal(sample.ffn_dense_selected.values[:n], image)  # --ffn-dense-tokens image
        for stream in range(n_layers):
            assert np.array_equal(sample.hidden.sel(stream=stream).values[:n], output.hidden_states[stream][0].numpy())
        for name in ("hidden", "keys", "values", "ffn_topk_index", "ffn_topk_value"):
            assert np.array_equal(sample[name].values, sample_by_path[name].values), name
        for layer in range(n_layers):
            cache = output.past_key_values.layers[layer]
            assert np.array_equal(sample["keys"].sel(layer=layer).values[:, :n], cache.keys[0].numpy())
            assert np.array_equal(sample["values"].sel(layer=layer).values[:, :n], cache.values[0].numpy())
            prerope = k_proj[layer][0].view(n, -1, sample.sizes["head_dim"]).transpose(0, 1)
            assert np.array_equal(sample.keys_prerope.sel(layer=layer).values[:, :n], prerope.numpy())
            dense = coefficients[layer][0]
            top_values, top_index = torch.topk(dense, TOPK, dim=-1)
            assert np.array_equal(sample.ffn_topk_index.sel(layer=layer).values[:n], top_index.numpy())
            assert np.array_equal(sample.ffn_topk_value.sel(layer=layer).values[:n], top_values.numpy())
            assert np.array_equal(sample.ffn_dense.sel(layer=layer).values[:n][image], dense.numpy()[image])

