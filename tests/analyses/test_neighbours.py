"""faiss and a numpy brute force agree on every neighbour, on real store vectors."""

from __future__ import annotations

import numpy as np
import pytest

import store.reader
from analyses import neighbours
from analyses.tokens import image_tokens, unit_vectors


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_faiss_equals_brute_force(plain_store, metric):
    ds = store.reader.open(plain_store)
    source = unit_vectors(ds, "values", image_tokens(ds, 0)).values
    target = unit_vectors(ds, "values", image_tokens(ds, 1)).values
    for layer in range(source.shape[0]):
        for head in range(source.shape[1]):
            scores, indices = neighbours.search(source[layer, head], target[layer, head], 3, metric, device="cpu")
            ref_scores, ref_indices = neighbours.brute_force(source[layer, head], target[layer, head], 3, metric)
            np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-4)
            # equal up to exact ties: where indices differ, the scores must tie
            differ = indices != ref_indices
            assert differ.mean() < 0.01
            assert np.allclose(scores[differ], ref_scores[differ], atol=1e-5)


@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_batched_nearest_equals_brute_force_per_unit(plain_store, metric):
    ds = store.reader.open(plain_store)
    source = unit_vectors(ds, "values", image_tokens(ds, 0)).values  # (layer, kv_head, n, d)
    target = unit_vectors(ds, "values", image_tokens(ds, 1)).values
    nearest = neighbours.nearest_batched(source, target, metric)
    assert nearest.shape == source.shape[:3]
    for layer in range(source.shape[0]):
        for head in range(source.shape[1]):
            ref_scores, ref_indices = neighbours.brute_force(source[layer, head], target[layer, head], 2, metric)
            differ = nearest[layer, head] != ref_indices[:, 0]  # only where the best two (nearly) tie
            assert differ.mean() < 0.01
            assert np.allclose(ref_scores[differ, 0], ref_scores[differ, 1], rtol=1e-5, atol=1e-5)


def test_search_validates():
    with pytest.raises(ValueError, match="unknown metric"):
        neighbours.search(np.zeros((1, 2)), np.zeros((1, 2)), metric="manhattan")
    if neighbours.gpu_count() == 0:
        with pytest.raises(RuntimeError, match="no GPU"):
            neighbours.search(np.ones((1, 2)), np.ones((1, 2)), device="gpu")
