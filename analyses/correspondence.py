"""Correspondence through nearest image tokens (Liu et al. §3.1), per layer and KV head.

Semantic correspondence: each source keypoint picks the image token covering it; its nearest target
token (faiss, cosine by default) predicts the target point at that token's centre; PCK@alpha counts a
prediction correct within alpha x the longer side of the target object's box.

Temporal correspondence: the first frame's mask labels its tokens; every later frame takes, for each
token, the top-k most similar tokens of the first frame and the last n frames within a spatial
neighbourhood, and averages their labels (weights exp(similarity / temperature)). Predicted token labels
are upsampled to pixels and scored with the DAVIS region (J, IoU) and boundary (F) measures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import xarray as xr
from skimage.morphology import disk
from skimage.segmentation import find_boundaries

from analyses import neighbours
from analyses.tokens import (
    ImageTokens,
    as_units,
    captured_samples,
    image_tokens_of,
    labels_to_tokens,
    n_images,
    sample_annotation,
    token_at,
    tokens_to_pixels,
    unit_vectors_of,
)
from store.masks import read_label_mask as load_mask
from store.schema import KV_HEAD, LAYER, VALUES

# ---------------------------------------------------------------------------------------------------------
# semantic correspondence

PAIR, VIDEO = "pair", "video"  # the dimensions of per-pair counts and per-video scores (the units of intervals)


@dataclass(frozen=True)
class KeypointPair:
    """Matching keypoints of a source and a target image, in pixels (x, y); NaN rows are not visible."""

    source: tuple[int, int]  # (sample, image index)
    target: tuple[int, int]
    source_points: np.ndarray  # (k, 2)
    target_points: np.ndarray  # (k, 2)
    target_box: tuple[float, float, float, float] | None = None  # x1, y1, x2, y2 pixels; None: whole image
    source_box: tuple[float, float, float, float] | None = None


def keypoint_pairs(ds: xr.Dataset) -> list[KeypointPair]:
    """Pairs from the store's annotations: every captured sample with two images and a `keypoints` entry
    [[source points], [target points]] (a manifest field); `bboxes` [[src box], [tgt box]] when given."""
    pairs = []
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        if "keypoints" not in annotation or n_images(ds, sample) < 2:
            continue
        source, target = (np.array([p if p is not None else [np.nan, np.nan] for p in points], np.float64).reshape(-1, 2)
                          for points in annotation["keypoints"][:2])
        boxes = annotation.get("bboxes")
        pairs.append(KeypointPair((int(sample), 0), (int(sample), 1), source, target,
                                  tuple(boxes[1]) if boxes else None, tuple(boxes[0]) if boxes else None))
    return pairs


def keypoint_hits(ds: xr.Dataset, pairs: list[KeypointPair], array: str = VALUES, part: str = "auto",
                  alpha: float = 0.1, metric: str = "cosine", layers: list[int] | None = None,
                  device: str = "auto") -> xr.Dataset:
    """Per usable keypoint of `pairs`, whether its prediction is within PCK@alpha: `correct` (keypoint, layer,
    kv_head) bool and `pair` (keypoint,), the index of its pair in `pairs` (for intervals over keypoints or pairs).

    Keypoints outside every source token (e.g. cropped away) or not visible in either image are left out and
    counted in the `n_unusable` attribute."""
    correct: list[np.ndarray] = []
    owners: list[np.ndarray] = []
    unusable = 0
    coords = None
    for index, (pair, src, tgt, src_vectors, tgt_vectors) in enumerate(
            _pairs_with_vectors(ds, pairs, array, part, layers)):
        coords = coords or {LAYER: src_vectors.layer.values, KV_HEAD: src_vectors.kv_head.values}
        rows, gt = _keypoint_tokens(pair, src)
        unusable += len(pair.source_points) - len(rows)
        if not len(rows):
            continue
        height, width = tgt.image_size
        x1, y1, x2, y2 = pair.target_box or (0.0, 0.0, float(width), float(height))
        tolerance = alpha * max(x2 - x1, y2 - y1)
        nearest = _nearest_per_unit(src_vectors, tgt_vectors, rows, metric, device)
        predicted = tgt.centres[nearest] * np.array([width, height])  # (layer, kv_head, rows, 2)
        correct.append(np.moveaxis(np.linalg.norm(predicted - gt, axis=-1) <= tolerance, -1, 0))
        owners.append(np.full(len(rows), index))
    if not correct:
        raise ValueError("no usable keypoints: pairs need visible keypoints inside image tokens")
    return xr.Dataset({"correct": (("keypoint", LAYER, KV_HEAD), np.concatenate(correct)),
                       "pair": ("keypoint", np.concatenate(owners))}, coords=coords,
                      attrs={"alpha": alpha, "array": array, "metric": metric, "n_unusable": unusable,
                             "n_pairs": len(pairs)})


def semantic_correspondence(ds: xr.Dataset, pairs: list[KeypointPair], array: str = VALUES, part: str = "auto",
                            alpha: float = 0.1, metric: str = "cosine", layers: list[int] | None = None,
                            device: str = "auto") -> xr.Dataset:
    """PCK@alpha per (layer, kv_head) over all usable keypoints of `pairs` (see `keypoint_hits`).

    Returns `pck` (layer, kv_head) and the counts behind it, also per pair with a usable keypoint
    (`pair_correct` (pair, layer, kv_head), `pair_keypoints` (pair): the units of PCK's interval); keypoints
    outside every source token (e.g. cropped away) or not visible in either image are left out and counted in
    `n_unusable`.
    """
    hits = keypoint_hits(ds, pairs, array, part, alpha, metric, layers, device)
    owners = hits.pair.values
    used_pairs = np.unique(owners)  # pairs with a usable keypoint, in their order in `pairs`
    pair_correct = np.stack([hits.correct.values[owners == p].sum(axis=0) for p in used_pairs]).astype(np.int64)
    pair_keypoints = np.array([(owners == p).sum() for p in used_pairs], np.int64)
    correct = pair_correct.sum(axis=0)
    used = hits.sizes["keypoint"]
    return xr.Dataset(
        {"pck": ((LAYER, KV_HEAD), correct / used), "n_correct": ((LAYER, KV_HEAD), correct),
         "pair_correct": ((PAIR, LAYER, KV_HEAD), pair_correct), "pair_keypoints": (PAIR, pair_keypoints)},
        coords={LAYER: hits[LAYER].values, KV_HEAD: hits[KV_HEAD].values},
        attrs={**hits.attrs, "n_keypoints": used},
    )


def object_match_rate(ds: xr.Dataset, pairs: list[KeypointPair], array: str = VALUES, part: str = "auto",
                      metric: str = "cosine", layers: list[int] | None = None, device: str = "auto") -> xr.Dataset:
    """Object-to-object matching per (layer, kv_head): of the source tokens whose centre lies in the source object's
    box, the fraction whose nearest target token (by `metric`) has its centre in the target object's box
    (`match_rate`); `chance` is that fraction for a uniformly drawn target token (the box's share of the target
    tokens), averaged the same way. Pairs without both boxes are skipped. Per pair with source tokens in its box:
    `pair_matched` (pair, layer, kv_head), `pair_source_tokens` and `pair_chance` (expected matches by chance)."""
    hits: np.ndarray | None = None
    pair_matched, pair_tokens, pair_chance = [], [], []
    coords = None
    n_source = 0
    chance = 0.0
    boxed = [pair for pair in pairs if pair.source_box is not None and pair.target_box is not None]
    for pair, src, tgt, src_vectors, tgt_vectors in _pairs_with_vectors(ds, boxed, array, part, layers):
        coords = coords or {LAYER: src_vectors.layer.values, KV_HEAD: src_vectors.kv_head.values}
        rows = np.flatnonzero(_inside(src.centres, pair.source_box, src.image_size))
        in_target = _inside(tgt.centres, pair.target_box, tgt.image_size)
        if not len(rows):
            continue
        if hits is None:
            hits = np.zeros(src_vectors.shape[:2], np.int64)
        pair_matched.append(in_target[_nearest_per_unit(src_vectors, tgt_vectors, rows, metric, device)].sum(axis=-1))
        hits += pair_matched[-1]
        n_source += len(rows)
        chance += len(rows) * float(in_target.mean())
        pair_tokens.append(len(rows))
        pair_chance.append(len(rows) * float(in_target.mean()))
    if hits is None:
        raise ValueError("no pair has source tokens inside its source object box")
    return xr.Dataset({"match_rate": ((LAYER, KV_HEAD), hits / n_source), "n_matched": ((LAYER, KV_HEAD), hits),
                       "pair_matched": ((PAIR, LAYER, KV_HEAD), np.stack(pair_matched)),
                       "pair_source_tokens": (PAIR, np.array(pair_tokens, np.int64)),
                       "pair_chance": (PAIR, np.array(pair_chance))},
                      coords=coords, attrs={"chance": chance / n_source, "n_source_tokens": n_source,
                                            "n_pairs": len(boxed), "array": array, "metric": metric})


def _nearest_per_unit(src_vectors: xr.DataArray, tgt_vectors: xr.DataArray, rows: np.ndarray, metric: str,
                      device: str) -> np.ndarray:
    """(layer, kv_head, len(rows)): for each unit, the target token nearest to each source token `rows`. On CPU every
    unit in one batched matmul; faiss per unit where a GPU is asked for or found."""
    if device == "gpu" or (device == "auto" and neighbours.gpu_count() > 0):
        nearest = np.zeros((*src_vectors.shape[:2], len(rows)), np.int64)
        for li in range(src_vectors.shape[0]):
            for hi in range(src_vectors.shape[1]):
                nearest[li, hi] = neighbours.search(src_vectors.values[li, hi, rows], tgt_vectors.values[li, hi], 1,
                                                    metric, device)[1][:, 0]
        return nearest
    return neighbours.nearest_batched(src_vectors.values[:, :, rows], tgt_vectors.values, metric)


def _inside(centres: np.ndarray, box: tuple[float, float, float, float], image_size: tuple[int, int]) -> np.ndarray:
    """Which token centres (n, 2) normalised (x, y) lie in a pixel box x1, y1, x2, y2 of an image (height, width)."""
    height, width = image_size
    x, y = centres[:, 0] * width, centres[:, 1] * height
    x1, y1, x2, y2 = box
    return (x >= x1) & (x <= x2) & (y >= y1) & (y <= y2)


READ_BYTES = 512 << 20  # vectors read per dask computation (each computation costs tens of ms)


def _pairs_with_vectors(ds: xr.Dataset, pairs: list[KeypointPair], array: str, part: str, layers: list[int] | None):
    """Each pair with its source / target tokens and their vectors, read in batches of about READ_BYTES.

    (Reading the next batch on a thread while searching the current one was slower on 2 cores: both are CPU-bound.)
    """
    units = as_units(ds[array])
    per_pair = 2 * 4 * int(np.prod(units.shape[1:])) * (len(layers) / units.sizes[LAYER] if layers else 1)
    size = max(1, int(READ_BYTES // per_pair))
    for start in range(0, len(pairs), size):
        batch = pairs[start : start + size]
        tokens = image_tokens_of(ds, [image for pair in batch for image in (pair.source, pair.target)], part=part)
        vectors = unit_vectors_of(ds, array, tokens, layers)
        for i, pair in enumerate(batch):
            yield pair, tokens[2 * i], tokens[2 * i + 1], vectors[2 * i], vectors[2 * i + 1]


def _keypoint_tokens(pair: KeypointPair, src: ImageTokens) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `src` under each usable source keypoint, and the matching target points."""
    height, width = src.image_size
    rows, targets = [], []
    for (x, y), gt in zip(pair.source_points, pair.target_points, strict=True):
        if np.isnan([x, y, *gt]).any():
            continue
        row = token_at(src, x / width, y / height)
        if row >= 0:
            rows.append(row)
            targets.append(gt)
    return np.array(rows, np.int64), np.array(targets, np.float64).reshape(-1, 2)


# ---------------------------------------------------------------------------------------------------------
# temporal correspondence


@dataclass
class Video:
    """Frames in order as (sample, image index), and each frame's ground-truth label map (H, W) int."""

    name: str
    frames: list[tuple[int, int]]
    masks: list[np.ndarray] = field(repr=False)


def videos(ds: xr.Dataset) -> list[Video]:
    """Videos from the store's annotations: a sample whose images are frames with a `masks` list (one path per
    frame), or single-image samples sharing a `video` name, ordered by `frame`, each with a `masks` path."""
    found: dict[str, list[tuple[float, tuple[int, int], str]]] = {}
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        masks = annotation.get("masks")
        if isinstance(masks, list) and len(masks) > 1:
            found[f"sample-{sample}"] = [(i, (int(sample), i), m) for i, m in enumerate(masks)]
        elif "video" in annotation and isinstance(masks, str):
            found.setdefault(str(annotation["video"]), []).append(
                (float(annotation.get("frame", sample)), (int(sample), 0), masks))
    out = []
    for name, frames in sorted(found.items()):
        frames.sort(key=lambda f: f[0])
        out.append(Video(name, [f[1] for f in frames], [load_mask(f[2]) for f in frames]))
    return out


def propagate_labels(features: list[np.ndarray], grids: list[np.ndarray], first_labels: np.ndarray, n_last: int = 7,
                     topk: int = 5, radius: int = 12, temperature: float = 0.1) -> list[np.ndarray]:
    """Soft labels (n_t, K) of every frame, propagated from `first_labels` (n_0, K).

    `features[t]` (n_t, d) and `grids[t]` (n_t, 2) are frame t's token vectors and grid cells. Each token of
    frame t looks at the tokens of frame 0 and of frames t-n_last .. t-1 within `radius` grid cells, keeps the
    `topk` most cosine-similar, and averages their labels with weights exp(similarity / temperature).
    """
    normed = [neighbours.prepare(f, "cosine").astype(np.float64) for f in features]
    labels = [first_labels.astype(np.float64)]
    for t in range(1, len(features)):
        context = sorted({0, *range(max(1, t - n_last), t)})
        ctx_features = np.concatenate([normed[c] for c in context])
        ctx_labels = np.concatenate([labels[c] for c in context])
        ctx_grid = np.concatenate([grids[c] for c in context])
        similarity = normed[t] @ ctx_features.T  # (n_t, n_ctx)
        near = np.abs(grids[t][:, None, :] - ctx_grid[None, :, :]).max(axis=2) <= radius
        similarity = np.where(near, similarity, -np.inf)
        k = min(topk, similarity.shape[1])
        top = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        top_similarity = np.take_along_axis(similarity, top, axis=1)
        weights = np.exp((top_similarity - np.max(top_similarity, axis=1, keepdims=True)) / temperature)
        weights = np.where(np.isfinite(top_similarity), weights, 0.0)
        weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
        labels.append(np.einsum("nk,nkc->nc", weights, ctx_labels[top]))
    return labels


def region_similarity(prediction: np.ndarray, truth: np.ndarray) -> float:
    """J: intersection over union of two binary masks (1 when both are empty)."""
    union = np.logical_or(prediction, truth).sum()
    return 1.0 if union == 0 else float(np.logical_and(prediction, truth).sum() / union)


def boundary_measure(prediction: np.ndarray, truth: np.ndarray, bound_th: float = 0.008) -> float:
    """F: boundary F-measure of two binary masks, boundaries matched within bound_th x the image diagonal."""
    tolerance = max(1, int(np.ceil(bound_th * np.hypot(*truth.shape))))
    pred_edges = find_boundaries(prediction, mode="inner")
    true_edges = find_boundaries(truth, mode="inner")
    if not pred_edges.any() and not true_edges.any():
        return 1.0
    if not pred_edges.any() or not true_edges.any():
        return 0.0
    from scipy.ndimage import binary_dilation

    footprint = disk(tolerance).astype(bool)
    precision = (pred_edges & binary_dilation(true_edges, footprint)).sum() / pred_edges.sum()
    recall = (true_edges & binary_dilation(pred_edges, footprint)).sum() / true_edges.sum()
    return 0.0 if precision + recall == 0 else float(2 * precision * recall / (precision + recall))


def score_video(predicted: list[np.ndarray], truth: list[np.ndarray]) -> tuple[float, float]:
    """Mean J and F over objects and frames, leaving out the first (given) and, with more than two frames,
    the last frame, as the DAVIS evaluation does."""
    frames = range(1, len(truth) - 1) if len(truth) > 2 else range(1, len(truth))
    objects = sorted(set(np.unique(truth[0]).tolist()) - {0})
    j = [region_similarity(predicted[t] == o, truth[t] == o) for t in frames for o in objects]
    f = [boundary_measure(predicted[t] == o, truth[t] == o) for t in frames for o in objects]
    return float(np.mean(j)) if j else float("nan"), float(np.mean(f)) if f else float("nan")


def temporal_correspondence(ds: xr.Dataset, video_list: list[Video], array: str = VALUES, part: str = "auto",
                            layers: list[int] | None = None, n_last: int = 7, topk: int = 5, radius: int = 12,
                            temperature: float = 0.1, upsample: str = "bilinear") -> xr.Dataset:
    """J, F and J&F mean per (layer, kv_head), averaged over `video_list`, and each video's (`J_video`, `F_video`:
    (video, layer, kv_head), the units of their intervals).

    Token labels reach pixels by `upsample` ("bilinear", as DINO-style evaluations do, or "nearest").
    """
    order = {"bilinear": 1, "nearest": 0}[upsample]
    scores_j, scores_f, coords = [], [], None
    for video in video_list:
        tokens = image_tokens_of(ds, video.frames, part=part)
        vectors = unit_vectors_of(ds, array, tokens, layers)
        coords = coords or {LAYER: vectors[0].layer.values, KV_HEAD: vectors[0].kv_head.values}
        n_labels = int(max(m.max() for m in video.masks)) + 1
        first = labels_to_tokens(tokens[0], video.masks[0], n_labels)
        shape = vectors[0].shape[:2]
        j, f = np.zeros(shape), np.zeros(shape)
        for li in range(shape[0]):
            for hi in range(shape[1]):
                soft = propagate_labels([v.values[li, hi] for v in vectors], [t.grid for t in tokens], first,
                                        n_last, topk, radius, temperature)
                predicted = [tokens_to_pixels(t, s, *m.shape, order=order).argmax(axis=-1)
                             for t, s, m in zip(tokens, soft, video.masks, strict=True)]
                j[li, hi], f[li, hi] = score_video(predicted, video.masks)
        scores_j.append(j)
        scores_f.append(f)
    if not scores_j:
        raise ValueError("no videos: frames need ground-truth masks (see analyses.correspondence.videos)")
    j_mean, f_mean = np.mean(scores_j, axis=0), np.mean(scores_f, axis=0)
    dims = (LAYER, KV_HEAD)
    per_video = (VIDEO, *dims)
    return xr.Dataset({"J": (dims, j_mean), "F": (dims, f_mean), "JF": (dims, (j_mean + f_mean) / 2),
                       "J_video": (per_video, np.stack(scores_j)), "F_video": (per_video, np.stack(scores_f))},
                      coords={**coords, VIDEO: [video.name for video in video_list]},
                      attrs={"array": array, "n_videos": len(scores_j), "n_last": n_last, "topk": topk,
                             "radius": radius, "temperature": temperature, "upsample": upsample})
