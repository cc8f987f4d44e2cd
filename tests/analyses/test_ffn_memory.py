"""FFN key-value memory: keys from the store equal a direct hook; value projections equal W_U @ down_proj[:, j]."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

import store.reader
from analyses.ffn_memory import (
    coherent_pairs,
    key_labels,
    label_coherence,
    prefix_labels,
    top_keys,
    value_agreement,
    value_logits,
)
from analyses.lens import Lens
from capture.datasets import expand_samples, load_image, open_dataset
from capture.loading import load_model, resolve_model
from capture.prompts import bbox_prompt
from capture.run import CaptureOptions, run_capture
from store.schema import CaptureConfig


@pytest.fixture(scope="module")
def prefix_store(synthetic_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("prefixes") / "s.zarr"
    run_capture(CaptureOptions(model="tiny-llava-1.5", data_root=synthetic_root, samples="annotations", template="bbox",
                               visual_prefix=True, tokens="last", limit=8, out=out, progress=False))
    return out


def test_keys_equal_a_direct_hook_and_values_equal_the_projection(prefix_store, synthetic_root):
    ds = store.reader.open(prefix_store)
    prefixes = prefix_labels(ds)
    assert len(prefixes) == 8 and prefixes["next_token_id"].notna().all()
    keys = top_keys(ds, prefixes)
    loaded = load_model(resolve_model("tiny-llava-1.5"), "auto", "cpu")
    decoder = loaded.adapter.decoder(loaded.model)
    records = expand_samples(open_dataset("synthetic-coco", synthetic_root, None, None), "annotations").records[:8]
    placeholder = loaded.adapter.image_placeholder(loaded.processor)
    for row, record in enumerate(records):
        image = load_image(record.image_paths[0])
        obj = record.annotation["object"]
        prompt, _ = bbox_prompt(loaded.processor.tokenizer, placeholder, obj["box"], image.width, image.height,
                                obj["label"], visual_prefix=True)
        inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [image])
        seen: dict[int, torch.Tensor] = {}
        handles = [layer.mlp.down_proj.register_forward_pre_hook(lambda m, a, i=i, seen=seen: seen.__setitem__(i, a[0]))
                   for i, layer in enumerate(decoder.layers)]
        with torch.inference_mode():
            loaded.model(**inputs)
        for handle in handles:
            handle.remove()
        for layer in range(len(decoder.layers)):
            expected = torch.topk(seen[layer][0, -1], 3).indices.numpy()
            assert np.array_equal(keys.values[row, layer], expected)

    compute_dtype = CaptureConfig.of(store.reader.open(prefix_store).attrs).compute_dtype  # bf16 or, without it, fp32
    lens = Lens.from_store(store.reader.open_lens(prefix_store), compute_dtype)
    down_proj = store.reader.open_lens(prefix_store).down_proj_weight
    for layer in range(2):
        chosen = keys.values[:, layer].ravel()
        direct = (loaded.model.lm_head.weight.float() @ decoder.layers[layer].mlp.down_proj.weight.float()[:, chosen]).T
        np.testing.assert_allclose(value_logits(lens, np.asarray(down_proj.sel(layer=layer).values), chosen),
                                   direct.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_key_labels_and_coherence_on_planted_keys():
    keys = xr.DataArray(np.array([[[5, 6]], [[5, 7]], [[5, 6]], [[8, 6]]]), dims=("prefix", "layer", "rank"),
                        coords={"layer": [3]})
    table = key_labels(keys, ["cat", "cat", "dog", "car"]).set_index("key")
    assert table.loc[5, "n_prefixes"] == 3 and table.loc[5, "top_labels"] == ["cat", "dog"]
    np.testing.assert_allclose(table.loc[5, "shares"], [2 / 3, 1 / 3])
    assert table.loc[6, "top_labels"] == ["cat", "dog", "car"]
    embeddings = {"cat": np.array([1.0, 0.1]), "dog": np.array([1.0, 0.0]), "car": np.array([0.0, 1.0])}
    coherence = label_coherence(table.reset_index(), embeddings)
    real = coherence[(coherence.kind == "labels") & (coherence.key == 5)].cosine.values
    np.testing.assert_allclose(real, [embeddings["cat"] @ embeddings["dog"] / np.linalg.norm(embeddings["cat"])])
    assert set(coherence.kind) == {"labels", "random"}


def test_value_agreement_on_a_planted_memory():
    """Value of unit 0 writes 'cat', unit 1 writes 'dog': prefixes activating the right unit agree."""
    vocabulary = np.array(["x", " cat", " dog"], dtype=object)
    lens = Lens(np.ones(3, np.float32), 1e-6, np.eye(3, dtype=np.float32), None, vocabulary, np.dtype(np.float32))
    down_proj = xr.DataArray(np.eye(3, dtype=np.float32)[None][:, :, [1, 2, 0, 0]], dims=("layer", "d_model", "ffn_unit"),
                             coords={"layer": [0]})
    keys = xr.DataArray(np.array([[[0]], [[1]], [[1]]]), dims=("prefix", "layer", "rank"), coords={"layer": [0]})
    prefixes = pd.DataFrame({"sample": [0, 1, 2], "label": ["cat", "dog", "cat"], "next_token_id": [1, 2, 1],
                             "last": [0, 0, 0]})
    result = value_agreement(keys, prefixes, lens, down_proj, top=1)
    assert result.agreement.values[0] == pytest.approx(2 / 3) and int(result.agreement_n[0]) == 3
    table = key_labels(keys, list(prefixes.label))
    pairs = coherent_pairs(table, pd.DataFrame({"layer": [0], "key": [1], "kind": ["labels"], "cosine": [0.9]}), lens,
                           down_proj, min_prefixes=2, top=1)
    assert list(pairs.key) == ["k1@0"] and pairs.value_top_tokens[0] == [" dog"]


def test_random_value_baseline_and_prediction_groups_on_a_planted_memory():
    """Units 0..3 write cat, dog, x, x. One random unit per layer and draw (as many as the keys per prefix): the
    expected agreement over the prefixes cat, dog, cat is P(unit 0) 2/3 + P(unit 1) 1/3 = 1/4, and a single draw
    gives 2/3, 1/3 or 0."""
    vocabulary = np.array(["x", " cat", " dog"], dtype=object)
    lens = Lens(np.ones(3, np.float32), 1e-6, np.eye(3, dtype=np.float32), None, vocabulary, np.dtype(np.float32))
    down_proj = xr.DataArray(np.eye(3, dtype=np.float32)[None][:, :, [1, 2, 0, 0]], dims=("layer", "d_model", "ffn_unit"),
                             coords={"layer": [0]})
    keys = xr.DataArray(np.array([[[0]], [[1]], [[1]]]), dims=("prefix", "layer", "rank"), coords={"layer": [0]})
    prefixes = pd.DataFrame({"sample": [0, 1, 2], "label": ["cat", "dog", "cat"], "next_token_id": [1, 2, 1],
                             "last": [0, 0, 0], "model_predicts_label": [True, False, True]})
    result = value_agreement(keys, prefixes, lens, down_proj, top=1, n_draws=4000, seed=1)
    assert float(result.agreement_random[0]) == pytest.approx(1 / 4, abs=0.02)
    assert float(result.agreement_random_low[0]) == 0 and float(result.agreement_random_high[0]) == pytest.approx(2 / 3)
    assert int(result.agreement_random_n[0]) == 4000
    # the model predicts the label for prefixes 0 (its key writes cat: agrees) and 2 (writes dog: does not)
    assert float(result.agreement_predicted[0]) == pytest.approx(1 / 2) and int(result.agreement_predicted_n[0]) == 2
    assert float(result.agreement_unpredicted[0]) == 1.0


def test_a_prefix_not_ending_the_sequence_is_refused():
    """With --tokens image the last stored token is an image token, not the position that predicts the label."""
    ds = xr.Dataset({"status": ("sample", [1]), "annotation": ("sample", ['{"object": {"label": "cat"}}']),
                     "n_tokens": ("sample", [3]), "seq_len": ("sample", [9]),
                     "position": (("sample", "token"), [[2, 3, 4]])})
    with pytest.raises(ValueError, match="position 4 of a 9-token sequence"):
        prefix_labels(ds)
    ds["position"] = (("sample", "token"), [[2, 3, 8]])
    assert prefix_labels(ds).label.tolist() == ["cat"]
