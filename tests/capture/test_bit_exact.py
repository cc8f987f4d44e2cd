"""What the store holds equals, bit for bit, what a plain transformers forward pass returns: batched forward passes
here; each family's single-sample check is in the adapter conformance suite (families/conformance.py)."""

from __future__ import annotations

import numpy as np
import torch

import store.reader
from capture.datasets import load_image
from capture.loading import load_model, resolve_model
from capture.options import CaptureOptions
from capture.prompts import build_prompt
from capture.run import run_capture

from .families.conformance import plain_forward


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
