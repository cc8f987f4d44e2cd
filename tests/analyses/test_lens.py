"""Logit lens from the store equals the model's own logits; streaming equals one shot; word scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import store.reader
from analyses.lens import (
    Lens,
    caption_words,
    image_object_hits,
    logit_lens,
    matches,
    object_hit_rate,
    object_hit_scores,
    precision_recall,
    top_tokens,
)
from analyses.object_words import COCO_WORDS
from analyses.tokens import ImageTokens
from analyses.topk import agreement, exact_products, rounding_bound
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
    """Blocks of 7 tokens (dask threads) and one matmul sum the same products in different orders: both lie within
    the float32 rounding bound of the exact logits, and their top-k ids are exact wherever the margins exceed it."""
    ds = store.reader.open(captured_store)
    lens = Lens.from_store(store.reader.open_lens(captured_store), "bfloat16")
    streamed = logit_lens(ds.hidden, lens, k=4, block_tokens=7).compute()
    hidden = np.asarray(ds.hidden.values)
    ids, values = top_tokens(hidden, lens, k=4, block=10**9)
    assert streamed.token_id.dims == ("sample", "stream", "token", "k")
    queries = lens.normalise(hidden.reshape(-1, hidden.shape[-1]))
    exact = exact_products(queries, lens.unembedding, lens.bias)
    bound = rounding_bound(queries, lens.unembedding, lens.bias)
    real = np.abs(queries).sum(axis=1) > 0  # padding slots: all-zero states whose logits tie
    for got_ids, got_values in ((streamed.token_id.values, streamed.logit.values), (ids, values)):
        check = agreement(got_ids.reshape(-1, 4)[real], got_values.reshape(-1, 4)[real], exact[real], bound[real])
        assert check.ok, check
        assert check.decided > 0.9 * check.n, check  # the bound is tight enough to decide most ranks
    same = (streamed.token_id.values == ids).mean()
    assert same > 0.9


COCO = (  # the 80 COCO detection classes, as instances_*.json names them
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow", "elephant",
    "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich", "orange", "broccoli",
    "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch", "potted plant", "bed", "dining table", "toilet",
    "tv", "laptop", "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)


def test_every_coco_class_is_matched_by_whole_words():
    assert len(COCO) == 80 and set(COCO_WORDS) == set(COCO)
    for name in COCO:
        head = name.split()[-1]
        assert matches(" " + name.replace(" ", "").capitalize(), name)  # the name as one word
        assert matches(head, name) == (name != "hot dog")  # the head noun, unless it names something else
        for word in name.split():  # no prefix counts unless the table lists it as a word of its own
            for end in range(3, len(word)):
                assert matches(word[:end], name) == (word[:end] in COCO_WORDS[name]), (word[:end], name)
    # the failures of prefix matching: other things named, and multi-word classes never named
    assert not any(matches(t, c) for t, c in [("car", "carrot"), ("hot", "hot dog"), ("hand", "handbag"),
                                              ("air", "airplane"), ("dog", "hot dog"), ("cell", "cell phone")])
    assert all(matches(t, c) for t, c in [(" table", "dining table"), ("phone", "cell phone"), (" Bear", "teddy bear"),
                                          (" dogs", "dog"), ("people", "person"), ("knives", "knife")])
    shared = {(a, b) for a in COCO for b in COCO if a < b and any(matches(w, b) for w in COCO_WORDS[a])}
    assert shared == {("bear", "teddy bear")}


def test_word_matching_and_caption_scores():
    assert matches(" Circle", "circle") and matches("circles", "circle") and not matches("circ", "circle")
    assert matches("bluebird", "blue bird") and matches(" birds", "blue bird") and not matches("blue", "blue bird")
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


def two_images():
    """Two images of 2 x 2 tokens over 10 x 10 pixels: a cat on the top row of image 0, a dog on the left column of
    image 1; each image's top-1 decoded word per (stream, token)."""
    vocabulary = np.array([" x", " cat", " dog", " cats"], dtype=object)
    lens = Lens(np.ones(2, np.float32), 1e-6, np.zeros((4, 2), np.float32), None, vocabulary, np.dtype(np.float32))
    boxes = np.array([[0, 0, 0.5, 0.5], [0.5, 0, 1, 0.5], [0, 0.5, 0.5, 1], [0.5, 0.5, 1, 1]], np.float64)
    grid = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    top, left = np.zeros((10, 10), bool), np.zeros((10, 10), bool)
    top[:5] = True
    left[:, :5] = True
    x, cat, dog, cats = range(4)
    ids = {0: [[x, x, x, x], [cat, x, x, x], [cats, cat, x, x]],  # object tokens 0, 1
           1: [[dog, x, cat, x], [x, x, x, x], [cat, x, x, x]]}  # object tokens 0, 2
    decoded = {s: (ImageTokens(s, 0, 0, np.arange(4), grid, boxes, (10, 10)), np.array(ids[s])[..., None])
               for s in (0, 1)}
    return decoded, lens, {0: [("cat", top)], 1: [("dog", left)]}


def test_neo_per_image_best_layer_rate_on_two_images():
    decoded, lens, instances = two_images()
    scores = object_hit_scores(image_object_hits(decoded, lens, instances, np.array([0, 1, 2])))
    # image 0: rates 0, 1/2, 2/2 per stream -> best 1 at stream 2; image 1: 1/2, 0, 0 -> best 1/2 at stream 0
    assert scores.best.estimate == pytest.approx((1 + 0.5) / 2) and scores.best.n == 2
    assert scores.best_stream.estimate == pytest.approx((2 + 0) / 2)
    # permuted labels: image 0 scored as "dog" never hits; image 1 scored as "cat": 1/2, 0, 1/2 -> best 1/2
    assert scores.best_baseline.estimate == pytest.approx((0 + 0.5) / 2)
    assert scores.best_difference.estimate == pytest.approx(((1 - 0) + (0.5 - 0.5)) / 2)
    # pooled over the 4 object tokens: (0 + 1) / 4, (1 + 0) / 4, (2 + 0) / 4; permuted (0 + 1) / 4, 0, (0 + 1) / 4
    np.testing.assert_allclose(scores.pooled.estimate, [0.25, 0.25, 0.5])
    np.testing.assert_allclose(scores.pooled_baseline.estimate, [0.25, 0.0, 0.25])
    assert scores.n_object_tokens == 4 and (scores.pooled.low <= scores.pooled.estimate).all()


def test_area_filter_keeps_objects_in_range():
    decoded, lens, instances = two_images()
    instances[1] = [("dog", instances[1][0][1][:, :] & (np.arange(10)[:, None] < 2))]  # a 2 x 5 = 10 px dog
    table = image_object_hits(decoded, lens, instances, np.array([0, 1, 2]), min_area=20, max_area=60)
    assert table.sample.values.tolist() == [0] and table.tokens.values.tolist() == [2]  # the 50 px cat only
