"""Logit lens from the store equals the model's own logits; streaming equals one shot; word scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import store.reader
from analyses.lens import Lens, caption_words, logit_lens, matches, object_hit_rate, precision_recall, top_tokens
from analyses.tokens import ImageTokens
from capture.datasets import load_image, open_dataset
from capture.loading import load_model, resolve_model
from capture.run import CaptureOptions, run_capture


@pytest.mark.parametrize("dtype, tolerance", [("bf16", 3e-2), ("fp32", 1e-4)])
def test_lens_on_the_last_layer_equals_the_model_logits(synthetic_root, tmp_path, dtype, tolerance):
    out = tmp_path / "s.zarr"
    run_capture(CaptureOptions(model="tiny-qwen2.5-vl", data_root=synthetic_root, limit=2, out=out, dtype=dtype,
                               progress=False))
    ds = store.reader.open(out)
    lens = Lens.from_store(store.reader.open_lens(out), ds.attrs["capture_config"]["compute_dtype"])
    loaded = load_model(resolve_model("tiny-qwen2.5-vl"), dtype, "cpu")
    record = open_dataset("synthetic-coco", synthetic_root, None, 1).records[0]
    inputs = loaded.adapter.processor_inputs(loaded.processor, str(ds.prompt.values[0]), [load_image(record.image_paths[0])])
    with torch.inference_mode():
        expected = loaded.model(**inputs).logits[0].float().numpy()
    n = int(ds.n_tokens[0])
    last = ds.hidden.isel(sample=0, stream=-1).values[:n]  # the raw last-layer output, before the final norm
    logits = lens.logits(np.asarray(last))
    scale = np.abs(expected).max()
    np.testing.assert_allclose(logits, expected, atol=tolerance * scale, rtol=tolerance)
    assert (logits.argmax(-1) == expected.argmax(-1)).mean() > 0.97


def test_streaming_equals_one_shot(captured_store):
    ds = store.reader.open(captured_store)
    lens = Lens.from_store(store.reader.open_lens(captured_store), "bfloat16")
    streamed = logit_lens(ds.hidden, lens, k=4, block_tokens=7).compute()
    ids, values = top_tokens(np.asarray(ds.hidden.values), lens, k=4, block=10**9)
    np.testing.assert_array_equal(streamed.token_id.values, ids)
    np.testing.assert_array_equal(streamed.logit.values, values)
    assert streamed.token_id.dims == ("sample", "stream", "token", "k")


def test_word_matching_and_caption_scores():
    assert matches(" Circle", "circle") and matches("circ", "circle") and not matches("ci", "circle")
    assert not matches("square", "circle") and not matches(" ", "circle")
    assert caption_words(["A red circle and a blue square."]) == {"red", "circle", "blue", "square"}
    precision, recall = precision_recall([" circle", "the", "dog", "red", ","], ["A red circle and a blue square."])
    assert (precision, recall) == (2 / 3, 2 / 4)


def test_object_hit_rate_counts_tokens_over_the_mask():
    vocabulary = np.array(["x", " circle", "sq"])
    lens = Lens(np.ones(2, np.float32), 1e-6, np.zeros((3, 2), np.float32), None, vocabulary, np.dtype(np.float32))
    boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]], np.float64)
    tokens = ImageTokens(0, 0, 0, np.arange(4), np.array([[0, 0], [0, 1], [1, 0], [1, 1]]), boxes, (10, 10))
    mask = np.zeros((10, 10), bool)
    mask[:5, :] = True  # the top two tokens
    ids = np.array([[[1], [1], [1], [0]], [[1], [0], [0], [0]]])  # (stream, token, k)
    result = object_hit_rate({0: (tokens, ids)}, lens, {0: {"circle": mask}}, np.array([0, 1]))
    np.testing.assert_allclose(result.hit_rate.values, [1.0, 0.5])
    assert result.attrs["best_stream"] == 0 and result.attrs["n_object_tokens"] == 2
