"""Clustering token vectors: k-means and spherical k-means (faiss), co-segmentation across a set of images
(Liu et al. §3.1, MSRC protocol simplified), and the seen / unseen label split of Jung et al. §3.
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
import xarray as xr

from analyses import neighbours
from analyses.tokens import image_tokens_of, tokens_to_pixels, unit_vectors_of
from store.schema import KV_HEAD, LAYER, VALUES


def kmeans(vectors: np.ndarray, k: int, spherical: bool = False, seed: int = 0, n_iter: int = 50,
           n_init: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Cluster the rows of `vectors` (n, d): (labels (n,), centroids (k, d)).

    Spherical k-means clusters directions: rows are L2-normalised, centroids kept on the unit sphere and
    points assigned by cosine. Best of `n_init` seeded runs; the same inputs give the same labels.
    """
    if not 1 <= k <= len(vectors):
        raise ValueError(f"k={k} must be between 1 and the number of vectors ({len(vectors)})")
    x = neighbours.prepare(vectors, "cosine" if spherical else "l2")
    model = faiss.Kmeans(x.shape[1], k, niter=n_iter, nredo=n_init, seed=seed, spherical=spherical,
                         max_points_per_centroid=max(256, len(x)), min_points_per_centroid=1, verbose=False)
    model.train(x)
    _, labels = model.index.search(x, 1)
    return labels[:, 0].astype(np.int64), model.centroids.copy()


def split_labels(labels: list[str], embeddings: np.ndarray, seed: int = 0, n_init: int = 20) -> dict[str, list[str]]:
    """Jung et al.'s seen / unseen split: spherical k-means with K=2 over label embeddings, best of `n_init`
    runs (with 5, some seeds stop in a worse local optimum even on 7 labels); the larger group is "seen" (they
    report 1,780 seen vs 1,246 unseen classes)."""
    assignment, _ = kmeans(embeddings, 2, spherical=True, seed=seed, n_init=n_init)
    groups = sorted(([label for label, a in zip(labels, assignment, strict=True) if a == g] for g in (0, 1)),
                    key=len, reverse=True)
    return {"seen": sorted(groups[0]), "unseen": sorted(groups[1])}


def co_segment(features: list[np.ndarray], k: int, presence: float = 0.05, image_fraction: float = 0.5,
               seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Foreground token masks of a set of images from their token vectors (list of (n_i, d)).

    All tokens are clustered together (spherical k-means, `k` clusters). A cluster is present in an image
    when it holds at least `presence` of that image's tokens; clusters present in more than `image_fraction`
    of the images are the common ones, and their tokens are foreground. Returns (masks, common cluster ids).
    """
    sizes = [len(f) for f in features]
    labels, _ = kmeans(np.concatenate(features), k, spherical=True, seed=seed)
    per_image = np.split(labels, np.cumsum(sizes)[:-1])
    present = np.array([np.bincount(lab, minlength=k) / len(lab) >= presence for lab in per_image])
    common = np.flatnonzero(present.mean(axis=0) > image_fraction)
    return [np.isin(lab, common) for lab in per_image], common


def co_segmentation(ds: xr.Dataset, samples: list[int], truth: Callable[[int], np.ndarray], array: str = VALUES,
                    part: str = "auto", k: int = 8, presence: float = 0.05, image_fraction: float = 0.5,
                    layers: list[int] | None = None, seed: int = 0) -> xr.Dataset:
    """Co-segmentation Jaccard (J_m: mean over images) per (layer, kv_head) for one image set.

    `truth(sample)` gives the (H, W) boolean foreground of a sample's image 0. Token foreground is upsampled
    to pixels (nearest) before comparing.
    """
    tokens = image_tokens_of(ds, [(s, 0) for s in samples], part=part)
    vectors = unit_vectors_of(ds, array, tokens, layers)
    masks = [np.asarray(truth(s), bool) for s in samples]
    shape = vectors[0].shape[:2]
    jaccard = np.zeros(shape)
    for li in range(shape[0]):
        for hi in range(shape[1]):
            foreground, _ = co_segment([v.values[li, hi] for v in vectors], k, presence, image_fraction, seed)
            scores = []
            for t, fg, mask in zip(tokens, foreground, masks, strict=True):
                predicted = tokens_to_pixels(t, fg[:, None].astype(np.float64), *mask.shape, order=0)[..., 0] > 0.5
                union = np.logical_or(predicted, mask).sum()
                scores.append(1.0 if union == 0 else np.logical_and(predicted, mask).sum() / union)
            jaccard[li, hi] = np.mean(scores)
    return xr.Dataset({"jaccard": ((LAYER, KV_HEAD), jaccard)},
                      coords={LAYER: vectors[0].layer.values, KV_HEAD: vectors[0].kv_head.values},
                      attrs={"array": array, "k": k, "presence": presence, "image_fraction": image_fraction,
                             "n_images": len(samples)})
