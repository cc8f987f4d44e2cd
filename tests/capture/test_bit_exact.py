"""What the store holds equals, bit for bit, what a plain transformers forward pass returns."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.loading import load_model, resolve_model
from capture.prompts import build_prompt
from capture.run import CaptureOptions, run_capture


def _bits(tensor: torch.Tensor) -> np.ndarray:
    tensor = tensor.detach()
    return (tensor.view(torch.uint16) if tensor.dtype == torch.bfloat16 else tensor).cpu().numpy()


def _stored_bits(array) -> np.ndarray:
    values = np.asarray(array)
    return values.view(np.uint16) if values.dtype == ml_dtypes.bfloat16 else values


def plain_forward(loaded, inputs):
    """A plain forward pass, plus the MLP inputs (to compute FFN coefficients independently)."""
    decoder = loaded.adapter.decoder(loaded.model)
    mlp_inputs, k_proj_outputs = {}, {}
    handles = []
    for index, layer in enumerate(decoder.layers):
        handles.append(layer.mlp.register_forward_pre_hook(lambda m, a, i=index: mlp_inputs.__setitem__(i, a[0])))
        handles.append(layer.self_attn.k_proj.register_forward_hook(
            lambda m, a, o, i=index: k_proj_outputs.__setitem__(i, o)))
    with torch.inference_mode():
        output = loaded.model(**inputs, output_hidden_states=True, use_cache=True)
        coefficients = {i: layer.mlp.act_fn(layer.mlp.gate_proj(mlp_inputs[i])) * layer.mlp.up_proj(mlp_inputs[i])
                        for i, layer in enumerate(decoder.layers)}
    for handle in handles:
        handle.remove()
    return output, coefficients, k_proj_outputs


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("model", ["tiny-llava-ov", "tiny-qwen2.5-vl", "tiny-llava-1.5", "tiny-llava-next"])
def test_store_equals_plain_forward(model, dtype, cache_home, synthetic_root, tmp_path):
    out = tmp_path / f"{dtype}.zarr"
    run_capture(CaptureOptions(
        model=model, data_root=synthetic_root, limit=4, out=out, batch_size=3, dtype=dtype,
        keys_prerope=True, ffn_dense_tokens="all", ffn_topk=7, progress=False,
    ))
    ds = store.reader.open(out)
    loaded = load_model(resolve_model(model), dtype, "cpu")
    decoder = loaded.adapter.decoder(loaded.model)
    n_layers = len(decoder.layers)
    records = open_dataset("synthetic-coco", synthetic_root, None, 4).records
    for index, record in enumerate(records):
        prompt = build_prompt(loaded.processor, "chat", "Describe the image.", 1)
        inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(record.image_paths[0])])
        output, coefficients, k_proj = plain_forward(loaded, inputs)
        sample = ds.isel(sample=index).compute()
        n = int(sample.n_tokens)
        assert n == inputs["input_ids"].shape[1]  # --tokens all
        assert (sample.token_id.values[:n] == inputs["input_ids"][0].numpy()).all()
        for stream in range(n_layers):  # residual input of each layer == hidden_states[i]
            assert np.array_equal(_stored_bits(sample.hidden.sel(stream=stream).values[:n]),
                                  _bits(output.hidden_states[stream][0]))
        # the last stream is the raw last-layer output; the final norm of it is transformers' last entry
        raw = torch.from_numpy(np.asarray(sample.hidden.sel(stream=n_layers).values[:n]).astype(np.float32))
        normed = decoder.norm(raw.to(loaded.dtype)[None])[0]
        assert np.array_equal(_bits(normed), _bits(output.hidden_states[n_layers][0]))
        assert not np.array_equal(_bits(raw.to(loaded.dtype)), _bits(output.hidden_states[n_layers][0]))
        for layer in range(n_layers):
            cache = output.past_key_values.layers[layer]
            assert np.array_equal(_stored_bits(sample["keys"].sel(layer=layer).values[:, :n]), _bits(cache.keys[0]))
            assert np.array_equal(_stored_bits(sample["values"].sel(layer=layer).values[:, :n]), _bits(cache.values[0]))
            prerope = k_proj[layer][0].view(n, -1, sample.sizes["head_dim"]).transpose(0, 1)
            assert np.array_equal(_stored_bits(sample.keys_prerope.sel(layer=layer).values[:, :n]), _bits(prerope))
            dense = coefficients[layer][0]
            assert np.array_equal(_stored_bits(sample.ffn_dense.sel(layer=layer).values[:n]), _bits(dense))
            top_values, top_index = torch.topk(dense, 7, dim=-1)
            assert np.array_equal(sample.ffn_topk_index.sel(layer=layer).values[:n], top_index.numpy())
            assert np.array_equal(_stored_bits(sample.ffn_topk_value.sel(layer=layer).values[:n]), _bits(top_values))
        assert bool(sample.ffn_dense_selected.values[:n].all())


def test_forward_batch_equals_plain_batched_forward(cache_home, tmp_path):
    """Samples batched together (same image size) equal a plain forward of that same batch."""
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.RandomState(1)
    for i in range(3):
        Image.fromarray(rng.randint(0, 255, (80, 100, 3), dtype=np.uint8)).save(images / f"{i}.png")
    out = tmp_path / "batched.zarr"
    run_capture(CaptureOptions(model="tiny-llava-ov", dataset="folder", data_root=images, out=out,
                               batch_size=3, forward_batch=3, dtype="fp32", progress=False))
    loaded = load_model(resolve_model("tiny-llava-ov"), "fp32", "cpu")
    prompt = build_prompt(loaded.processor, "chat", "Describe the image.", 1)
    per_sample = [loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(images / f"{i}.png")])
                  for i in range(3)]
    batch = {k: torch.cat([inputs[k] for inputs in per_sample]) for k in per_sample[0]}
    output, _, _ = plain_forward(loaded, batch)
    ds = store.reader.open(out)
    n = int(ds.n_tokens[0])
    for b in range(3):
        assert np.array_equal(ds.hidden.isel(sample=b, stream=1).values[:n], output.hidden_states[1][b].numpy())
        assert np.array_equal(ds["values"].isel(sample=b, layer=1).values[:, :n],
                              output.past_key_values.layers[1].values[b].numpy())
