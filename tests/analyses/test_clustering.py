"""Clustering recovers planted clusters; co-segmentation finds a planted common object, keeps a shared background out
by saliency voting (Jaccard against hand-computed values); label split."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from sklearn.metrics import adjusted_rand_score

import store.reader
from analyses.clustering import co_segment, co_segmentation, elbow_k, jaccard, kmeans, split_labels
from analyses.ground_truth import object_masks
from store.schema import ImagePart, SampleStatus, TokenKind


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


def test_jaccard_on_two_4x4_masks():
    predicted, truth = np.zeros((4, 4), bool), np.zeros((4, 4), bool)
    predicted[:2, :] = True  # 8 pixels
    truth[1:3, :2] = True  # 4 pixels, 2 of them predicted
    assert jaccard(predicted, truth) == 2 / 10
    assert jaccard(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0


def cows_on_grass(n_images: int = 3) -> xr.Dataset:
    """Images of 2 x 2 tokens over 10 x 10 pixels: the top row is the common object (one direction), the bottom
    row the background every image shares (another direction); the last position attends to the object."""
    rng = np.random.RandomState(0)
    values = np.zeros((n_images, 1, 1, 4, 3), np.float32)
    values[..., :2, :] = [1, 0, 0]
    values[..., 2:, :] = [0, 1, 0]
    values += rng.normal(0, 0.01, values.shape).astype(np.float32)
    r, c = np.divmod(np.arange(4), 2)
    box = np.stack([c / 2, r / 2, (c + 1) / 2, (r + 1) / 2], axis=1)
    tile = lambda a: np.tile(a, (n_images,) + (1,) * np.ndim(a))  # noqa: E731
    return xr.Dataset({
        "values": (("sample", "layer", "kv_head", "token", "head_dim"), values),
        "attention_last": (("sample", "layer", "head", "token"), tile(np.array([[[0.4, 0.4, 0.1, 0.1]]]))),
        "kind": (("sample", "token"), tile(np.full(4, TokenKind.IMAGE, np.int8))),
        "image_index": (("sample", "token"), tile(np.zeros(4, np.int16))),
        "image_part": (("sample", "token"), tile(np.full(4, ImagePart.BASE, np.int8))),
        "grid_row": (("sample", "token"), tile(r)), "grid_col": (("sample", "token"), tile(c)),
        "token_box": (("sample", "token", "box_coord"), tile(box)),
        "image_height": (("sample", "image"), np.full((n_images, 1), 10)),
        "image_width": (("sample", "image"), np.full((n_images, 1), 10)),
        "status": (("sample",), np.full(n_images, SampleStatus.CAPTURED, np.int8)),
    }, coords={"layer": [0]})


def test_elbow_keeps_the_first_k_that_no_longer_pays():
    """Amir et al.'s rule: k = 1, 2, ...; the first k whose mean squared distance is above 0.975 x that of k - 1."""
    rng = np.random.RandomState(0)
    vectors = np.repeat(rng.normal(0, 1, (3, 16)), 50, axis=0) + rng.normal(0, 0.05, (150, 16))
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    costs = []
    for k in range(1, 15):
        labels, centroids = kmeans(unit, k, spherical=True)
        costs.append(((unit - centroids[labels]) ** 2).sum(axis=1).mean())
    expected = next(k for k in range(2, 15) if costs[k - 1] > 0.975 * costs[k - 2])
    assert elbow_k(vectors) == expected and expected > 3  # noise keeps paying a little: the rule overshoots


def test_saliency_keeps_a_shared_background_out():
    """The truth is the top row's left 8 columns (40 px). Saliency voting keeps the object cluster only: the top row,
    50 px, Jaccard 40 / 50. Keeping every common cluster takes the grass too: all 100 px, Jaccard 40 / 100."""
    ds = cows_on_grass()
    truth = np.zeros((10, 10), bool)
    truth[:5, :8] = True
    k = 2
    voted = co_segmentation(ds, [0, 1, 2], lambda s: truth, k=k)
    np.testing.assert_allclose(voted.jaccard.values.ravel(), 40 / 50)
    common = co_segmentation(ds, [0, 1, 2], lambda s: truth, k=k, saliency=False)
    np.testing.assert_allclose(common.jaccard.values.ravel(), 40 / 100)
    with pytest.raises(ValueError, match="--attention-last"):
        co_segmentation(ds.drop_vars("attention_last"), [0, 1, 2], lambda s: truth, k=k)


def test_co_segmentation_on_a_store_scores_against_coco_masks(plain_store):
    """One cluster, common to every image: every pixel is foreground, so each image's Jaccard is its mask's share of
    the image."""
    ds = store.reader.open(plain_store)
    samples = [s for s in range(12) if "circle" in json.loads(str(ds.annotation.values[s]))["categories"]]
    result = co_segmentation(ds, samples, lambda s: object_masks(ds, s)["circle"], k=1, saliency=False, layers=[0])
    assert result.jaccard.dims == ("sample", "layer", "kv_head") and result.attrs["n_images"] == len(samples)
    for sample in samples:
        mask = object_masks(ds, sample)["circle"]
        assert mask.shape == (int(ds.image_height.values[sample, 0]), int(ds.image_width.values[sample, 0]))
        np.testing.assert_allclose(result.jaccard.sel(sample=sample).values, mask.sum() / mask.size)


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
