"""What the store holds equals, bit for bit, what a plain transformers forward pass returns: batched forward passes
here; each family's single-sample check is in the adapter conformance suite (families/conformance.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.loading import load_model, resolve_model
from capture.options import CaptureOptions
from capture.prompts import build_prompt
from capture.run import run_capture
from store.schema import FFN_TOPK_ORDER_ABS, CaptureConfig

from .families.conformance import bits, plain_forward, stored_bits


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


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
def test_abs_ranked_ffn_keys_and_next_tokens_equal_a_plain_forward(dtype, cache_home, synthetic_root, tmp_path):
    """--ffn-topk-by abs keeps the largest |coefficient| with its sign; --next-token-topk keeps the model's own top
    next tokens at the last position; both recorded in the capture config."""
    out = tmp_path / "abs.zarr"
    run_capture(CaptureOptions(model="tiny-qwen2.5-vl", data_root=synthetic_root, limit=2, out=out, dtype=dtype,
                               ffn_topk=5, ffn_topk_by="abs", next_token_topk=4, progress=False))
    ds = store.reader.open(out)
    config = CaptureConfig.of(ds.attrs)
    assert config.ffn_topk_order == FFN_TOPK_ORDER_ABS and config.next_token_topk == 4
    loaded = load_model(resolve_model("tiny-qwen2.5-vl"), dtype, "cpu")
    prompt = build_prompt(loaded.processor, "chat", "Describe the image.", 1)
    negative = 0
    for index, record in enumerate(open_dataset("synthetic-coco", synthetic_root, None, 2).records):
        inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(record.image_paths[0])])
        _, coefficients, _ = plain_forward(loaded, inputs)
        with torch.inference_mode():
            last = loaded.model(**inputs, logits_to_keep=1).logits[0, -1].float()
        logits, ids = torch.topk(last, 4)
        assert np.array_equal(ds.next_token_topk_index.values[index], ids.numpy())
        assert np.array_equal(ds.next_token_topk_logit.values[index], logits.numpy())
        n = int(ds.n_tokens[index])
        for layer in range(len(coefficients)):
            dense = coefficients[layer][0]
            _, top = torch.topk(dense.abs(), 5, dim=-1)
            assert np.array_equal(ds.ffn_topk_index.isel(sample=index, layer=layer).values[:n], top.numpy())
            stored = stored_bits(ds.ffn_topk_value.isel(sample=index, layer=layer).values[:n])
            assert np.array_equal(stored, bits(dense.gather(-1, top)))
            negative += int((dense.gather(-1, top) < 0).sum())
    assert negative > 0  # strongly negative memories are kept, not only the highest signed ones
