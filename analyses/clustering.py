"""Clustering token vectors: k-means and spherical k-means (faiss), co-segmentation across a set of images
(Liu et al. §3.1 after Amir et al. 2022), and the seen / unseen label split of Jung et al. §3.

Co-segmentation as Amir et al. do it: every token of the set is clustered together (spherical k-means, k by their
elbow rule unless given), and a cluster is foreground when it is salient, i.e. its tokens' mean saliency exceeds a
threshold, in at least 75% of the images. A background shared by the images (grass under every cow) forms a common
cluster too; saliency is what keeps it out. Amir et al. take saliency from DINO's CLS attention; a language model
has no CLS token, and the closest thing is the attention of the last position to the image tokens (a capture with
`--attention-last`), averaged over layers and heads and min-max normalised per image. Without saliency
(`saliency=None`) every cluster common to most images is foreground, a shared background included. Their GrabCut
refinement is not applied: masks are token masks upsampled to pixels (nearest).
"""

from __future__ import annotations

from collections.abc import Callable

import faiss
import numpy as np
import xarray as xr

from analyses import neighbours
from analyses.tokens import ImageTokens, image_tokens_of, tokens_to_pixels, unit_vectors_of
from store.schema import ATTENTION_LAST, HEAD, KV_HEAD, LAYER, SAMPLE, TOKEN, VALUES

SALIENCY_THRESHOLD = 0.065  # Amir et al.: a cluster is salient in an image above this mean saliency
SALIENT_IMAGES = 0.75  # ... and foreground when salient in at least this share of the images
ELBOW = 0.975  # Amir et al.: k grows while the mean squared distance falls below this share of the previous one
MAX_K = 14


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


def elbow_k(vectors: np.ndarray, spherical: bool = True, elbow: float = ELBOW, max_k: int = MAX_K,
            seed: int = 0) -> int:
    """Amir et al.'s number of clusters: k = 1, 2, ... until the mean squared distance to the centroids is no longer
    below `elbow` times that of k - 1 (that k is kept), at most `max_k`."""
    x = neighbours.prepare(vectors, "cosine" if spherical else "l2")
    previous = None
    for k in range(1, min(max_k, len(x)) + 1):
        labels, centroids = kmeans(x, k, spherical, seed)
        cost = float(((x - centroids[labels]) ** 2).sum(axis=1).mean())
        if previous is not None and (cost > elbow * previous or previous <= 1e-12):  # no gain, or nothing left
            return k
        previous = cost
    return min(max_k, len(x))


def jaccard(predicted: np.ndarray, truth: np.ndarray) -> float:
    """|predicted & truth| / |predicted | truth| of two boolean masks (1 when both are empty)."""
    union = np.logical_or(predicted, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(predicted, truth).sum() / union)


def co_segment(features: list[np.ndarray], k: int, saliency: list[np.ndarray] | None = None,
               threshold: float = SALIENCY_THRESHOLD, salient_images: float = SALIENT_IMAGES, presence: float = 0.05,
               image_fraction: float = 0.5, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Foreground token masks of a set of images from their token vectors (list of (n_i, d)).

    All tokens are clustered together (spherical k-means; `k` 0: `elbow_k`). With `saliency` (per image (n_i,) in
    [0, 1]) a cluster votes in an image where its tokens' mean saliency exceeds `threshold`, and clusters with votes
    in at least `salient_images` of the images are foreground (Amir et al.). Without, clusters holding at least
    `presence` of the tokens of more than `image_fraction` of the images are. Returns (masks, foreground clusters).
    """
    sizes = [len(f) for f in features]
    stacked = np.concatenate(features)
    k = k or elbow_k(stacked, seed=seed)
    labels, _ = kmeans(stacked, k, spherical=True, seed=seed)
    per_image = np.split(labels, np.cumsum(sizes)[:-1])
    if saliency is None:
        present = np.array([np.bincount(lab, minlength=k) / len(lab) >= presence for lab in per_image])
        chosen = np.flatnonzero(present.mean(axis=0) > image_fraction)
    else:
        votes = np.zeros(k)
        for lab, weight in zip(per_image, saliency, strict=True):
            totals, counts = np.bincount(lab, weights=weight, minlength=k), np.bincount(lab, minlength=k)
            votes += (counts > 0) & (totals > threshold * counts)  # mean saliency above the threshold
        chosen = np.flatnonzero(votes >= np.ceil(len(features) * salient_images))
    return [np.isin(lab, chosen) for lab in per_image], chosen


def attention_saliency(ds: xr.Dataset, tokens: ImageTokens) -> np.ndarray:
    """(n,) saliency of an image's tokens: the last position's attention to them, averaged over layers and heads,
    min-max normalised over the image's tokens. ValueError without attention rows."""
    if ATTENTION_LAST not in ds:
        raise ValueError("co-segmentation needs a saliency map to tell the common object from a shared background "
                         "(Amir et al.): capture with --attention-last, or pass --saliency none to keep every common "
                         "cluster (a background shared by the images then counts as foreground)")
    rows = ds[ATTENTION_LAST].isel({SAMPLE: tokens.sample, TOKEN: tokens.positions}).mean((LAYER, HEAD))
    values = np.asarray(rows.values, np.float64)
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 0 else np.zeros_like(values)


def co_segmentation(ds: xr.Dataset, samples: list[int], truth: Callable[[int], np.ndarray], array: str = VALUES,
                    part: str = "auto", k: int = 0, saliency: bool = True, threshold: float = SALIENCY_THRESHOLD,
                    salient_images: float = SALIENT_IMAGES, presence: float = 0.05, image_fraction: float = 0.5,
                    layers: list[int] | None = None, seed: int = 0) -> xr.Dataset:
    """Co-segmentation Jaccard per (sample, layer, kv_head) of one image set (its mean over images is MSRC's J_m).

    `truth(sample)` gives the (H, W) boolean foreground of a sample's image 0. `saliency`: vote with the attention
    saliency (`attention_saliency`), else keep common clusters. Token foreground is upsampled to pixels (nearest).
    """
    tokens = image_tokens_of(ds, [(s, 0) for s in samples], part=part)
    vectors = unit_vectors_of(ds, array, tokens, layers)
    masks = [np.asarray(truth(s), bool) for s in samples]
    weights = [attention_saliency(ds, t) for t in tokens] if saliency else None
    shape = vectors[0].shape[:2]
    scores = np.zeros((len(samples), *shape))
    for li in range(shape[0]):
        for hi in range(shape[1]):
            foreground, _ = co_segment([v.values[li, hi] for v in vectors], k, weights, threshold, salient_images,
                                       presence, image_fraction, seed)
            for i, (t, fg, mask) in enumerate(zip(tokens, foreground, masks, strict=True)):
                predicted = tokens_to_pixels(t, fg[:, None].astype(np.float64), *mask.shape, order=0)[..., 0] > 0.5
                scores[i, li, hi] = jaccard(predicted, mask)
    return xr.Dataset({"jaccard": ((SAMPLE, LAYER, KV_HEAD), scores)},
                      coords={SAMPLE: samples, LAYER: vectors[0].layer.values, KV_HEAD: vectors[0].kv_head.values},
                      attrs={"array": array, "k": k or "elbow", "saliency": "attention" if saliency else "none",
                             "threshold": threshold, "salient_images": salient_images, "n_images": len(samples)})
