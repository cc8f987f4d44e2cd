"""Clustering recovers planted clusters; co-segmentation finds a planted common object; label split."""

from __future__ import annotations

import json

import numpy as np
from sklearn.metrics import adjusted_rand_score

import store.reader
from analyses.clustering import co_segment, co_segmentation, kmeans, split_labels
from analyses.ground_truth import object_masks


def _blobs(seed: int = 0):
    rng = np.random.RandomState(seed)
    centres = rng.normal(0, 10, (4, 16))
    truth = np.repeat(np.arange(4), 50)
    return centres[truth] + rng.normal(0, 0.5, (200, 16)), truth


def test_kmeans_recovers_planted_blobs():
    vectors, truth = _blobs()
    labels, centroids = kmeans(vectors, 4)
    assert adjusted_rand_score(truth, labels) == 1.0 and centroids.shape == (4, 16)
    again, _ = kmeans(vectors, 4)
    assert np.array_equal(labels, again)  # seeded


def test_spherical_kmeans_clusters_directions_not_norms():
    rng = np.random.RandomState(1)
    directions = rng.normal(0, 1, (3, 8))
    truth = np.repeat(np.arange(3), 40)
    scale = rng.uniform(0.1, 100, (120, 1))  # norms vary 1000x: plain k-means would split by norm
    vectors = (directions[truth] + rng.normal(0, 0.05, (120, 8))) * scale
    labels, centroids = kmeans(vectors, 3, spherical=True)
    assert adjusted_rand_score(truth, labels) == 1.0
    np.testing.assert_allclose(np.linalg.norm(centroids, axis=1), 1.0, atol=1e-5)
    plain, _ = kmeans(vectors, 3)
    assert adjusted_rand_score(truth, plain) < 1.0


def test_co_segment_keeps_the_cluster_common_to_most_images():
    """Each image: 10 foreground tokens along one shared direction, 30 background tokens along its own."""
    rng = np.random.RandomState(2)
    shared = rng.normal(0, 1, 12)
    features, truth = [], []
    for _ in range(4):
        own = rng.normal(0, 1, 12)
        fg = shared + rng.normal(0, 0.05, (10, 12))
        bg = own + rng.normal(0, 0.05, (30, 12))
        order = rng.permutation(40)
        features.append(np.concatenate([fg, bg])[order])
        truth.append((np.arange(40) < 10)[order])
    masks, common = co_segment(features, k=5)
    assert len(common) == 1
    for mask, expected in zip(masks, truth, strict=True):
        assert np.array_equal(mask, expected)


def test_co_segmentation_on_a_store_scores_against_coco_masks(plain_store):
    ds = store.reader.open(plain_store)
    samples = [s for s in range(12) if "circle" in json.loads(str(ds.annotation.values[s]))["categories"]]
    result = co_segmentation(ds, samples, lambda s: object_masks(ds, s)["circle"], k=4, layers=[0])
    assert result.jaccard.dims == ("layer", "kv_head") and result.attrs["n_images"] == len(samples)
    assert ((result.jaccard.values >= 0) & (result.jaccard.values <= 1)).all()
    mask = object_masks(ds, samples[0])["circle"]
    assert mask.shape == (int(ds.image_height.values[samples[0], 0]), int(ds.image_width.values[samples[0], 0]))
    assert 0 < mask.mean() < 1


def test_split_labels_on_planted_and_real_embeddings():
    rng = np.random.RandomState(3)
    labels = [f"a{i}" for i in range(7)] + [f"b{i}" for i in range(4)]
    axis = np.eye(6)
    embeddings = np.concatenate([axis[0] + rng.normal(0, 0.05, (7, 6)), axis[3] + rng.normal(0, 0.05, (4, 6))])
    assert split_labels(labels, embeddings) == {"seen": sorted(labels[:7]), "unseen": sorted(labels[7:])}

    from analyses.label_embeddings import embed_labels

    words = ["dog", "cat", "horse", "cow", "car", "truck", "bus"]
    split = split_labels(words, embed_labels(words))
    assert {frozenset(split["seen"]), frozenset(split["unseen"])} == {frozenset(words[:4]), frozenset(words[4:])}
