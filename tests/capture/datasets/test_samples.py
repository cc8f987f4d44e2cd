"""--samples and --text-only: one sample per image, per box annotation or per category name."""

from __future__ import annotations

import numpy as np
import pytest

import store.reader
from capture.datasets import expand_samples, open_dataset, record_fields
from capture.errors import CaptureError
from capture.loading import load_model, resolve_model
from capture.options import CaptureOptions
from capture.prompts import build_prompt
from capture.registry import TINY_MODELS
from capture.run import run_capture


def test_annotations_and_categories(synthetic_root):
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 3)
    per_box = expand_samples(dataset, "annotations")
    n_objects = sum(len(r.annotation["objects"]) for r in dataset.records)
    assert len(per_box.records) == n_objects > 3
    first = per_box.records[0]
    assert first.sample_id == f"1#{first.annotation['object']['id']}" and "objects" not in first.annotation
    assert record_fields(first)["label"] == first.annotation["object"]["label"]
    assert record_fields(first)["caption"] == dataset.records[0].annotation["captions"][0]
    categories = expand_samples(dataset, "categories")
    labels = sorted({c for r in dataset.records for c in r.annotation["categories"]})
    assert [r.text for r in categories.records] == labels and all(r.image_paths == () for r in categories.records)
    assert all(r.image_paths == () for r in expand_samples(dataset, "images", text_only=True).records)
    with pytest.raises(CaptureError, match="unknown --samples"):
        expand_samples(dataset, "boxes")


def test_limit_counts_expanded_samples(synthetic_root, tmp_path):
    out = tmp_path / "boxes.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", data_root=synthetic_root, samples="annotations",
                                         template="bbox", limit=5, out=out, tokens="last", progress=False))
    assert summary.captured == 5
    ds = store.reader.open(out)
    assert all("#" in str(s) for s in ds.sample_id.values)


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_text_only_capture_equals_plain_forward(model, synthetic_root, tmp_path):
    """Class names alone, no image: the same layout, and bit-exact with a plain text forward pass."""
    import torch

    out = tmp_path / "text.zarr"
    run_capture(CaptureOptions(model=model, data_root=synthetic_root, samples="categories", out=out,
                               template="{image}{text}", progress=False))
    ds = store.reader.open(out)
    loaded = load_model(resolve_model(model), "auto", "cpu")
    labels = [str(t) for t in ds.sample_id.values]
    assert labels == sorted(labels) and labels[0].startswith("category:")
    for i, sample_id in enumerate(labels):
        label = sample_id.removeprefix("category:")
        prompt = build_prompt(loaded.processor, "{image}{text}", label, 0)
        assert str(ds.prompt.values[i]) == prompt
        inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [])
        with torch.inference_mode():
            output = loaded.model(**inputs, output_hidden_states=True, use_cache=True)
        n = int(ds.n_tokens[i])
        assert n == inputs["input_ids"].shape[1] and (ds.image_index.values[i, :n] == -1).all()
        stored = np.asarray(ds["values"].isel(sample=i, layer=1).values[:, :n]).view(np.uint16)
        assert np.array_equal(stored, output.past_key_values.layers[1].values[0].view(torch.uint16).numpy())
        stored = np.asarray(ds.hidden.isel(sample=i, stream=2).values[:n]).view(np.uint16)
        assert not np.array_equal(stored, output.hidden_states[2][0].view(torch.uint16).numpy())  # raw, not normed
        stored = np.asarray(ds.hidden.isel(sample=i, stream=1).values[:n]).view(np.uint16)
        assert np.array_equal(stored, output.hidden_states[1][0].view(torch.uint16).numpy())
