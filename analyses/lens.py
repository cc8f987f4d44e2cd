"""Logit lens (Neo et al. §4.1; Wei ch. 3): the final RMS norm and the unembedding applied to stored hidden
states, from the store's `lens/` group, streamed in token blocks so the vocab x tokens matrix never exists.

The norm reproduces the model's arithmetic: normalise in float32, round to the compute dtype, multiply by
the weight in that dtype; the product with the unembedding is then taken in float32.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import xarray as xr

from analyses import intervals
from analyses.object_words import names, normalise_word, object_words
from analyses.tokens import ImageTokens, labels_to_tokens
from store.schema import (
    ATTR_NORM_EPS,
    ATTR_NORM_KIND,
    D_MODEL,
    LENS_NORM_WEIGHT,
    LENS_UNEMBEDDING,
    LENS_UNEMBEDDING_BIAS,
    LENS_VOCABULARY,
    SAMPLE,
    STREAM,
    TOKEN,
    TOKEN_ID,
)

RMS_NORMS = ("RMSNorm",)  # class-name suffix of the supported final norms (Qwen2RMSNorm, LlamaRMSNorm, ...)
DTYPES = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16), "float32": np.dtype(np.float32)}


@dataclass(frozen=True)
class Lens:
    """What the logit lens needs, loaded: norm weight (d_model,), eps, unembedding (vocab, d_model) float32,
    optional bias (vocab,), the decoded vocabulary, and the compute dtype the norm rounds to."""

    norm_weight: np.ndarray
    eps: float
    unembedding: np.ndarray
    bias: np.ndarray | None
    vocabulary: np.ndarray
    dtype: np.dtype

    @classmethod
    def from_store(cls, lens: xr.Dataset, compute_dtype: str) -> Lens:
        kind = str(lens.attrs.get(ATTR_NORM_KIND, ""))
        if not kind.endswith(RMS_NORMS):
            raise ValueError(f"logit lens supports RMS final norms; this store's is {kind or 'unknown'}")
        dtype = DTYPES[compute_dtype]
        bias = lens[LENS_UNEMBEDDING_BIAS].values.astype(np.float32) if LENS_UNEMBEDDING_BIAS in lens else None
        return cls(np.asarray(lens[LENS_NORM_WEIGHT].values).astype(dtype), float(lens.attrs[ATTR_NORM_EPS]),
                   np.asarray(lens[LENS_UNEMBEDDING].values).astype(np.float32), bias,
                   np.array([str(t) for t in lens[LENS_VOCABULARY].values], dtype=object), dtype)

    def normalise(self, hidden: np.ndarray) -> np.ndarray:
        """The final norm of hidden states (..., d_model), as float32 holding compute-dtype values."""
        x = hidden.astype(np.float32)
        x = x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + np.float32(self.eps))
        return (x.astype(self.dtype) * self.norm_weight).astype(np.float32)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """(..., vocab) float32 logits of hidden states (..., d_model)."""
        out = self.normalise(hidden) @ self.unembedding.T
        return out + self.bias if self.bias is not None else out


def top_tokens(hidden: np.ndarray, lens: Lens, k: int = 5, block: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Top-k token ids and logits (..., k), best first, for hidden states (..., d_model), `block` rows at a time."""
    flat = hidden.reshape(-1, hidden.shape[-1])
    ids = np.zeros((len(flat), k), np.int64)
    values = np.zeros((len(flat), k), np.float32)
    for start in range(0, len(flat), block):
        logits = lens.logits(flat[start:start + block])
        part = np.argpartition(-logits, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(logits, part, axis=1), axis=1, kind="stable")
        ids[start:start + block] = np.take_along_axis(part, order, axis=1)
        values[start:start + block] = np.take_along_axis(logits, ids[start:start + block], axis=1)
    return ids.reshape(*hidden.shape[:-1], k), values.reshape(*hidden.shape[:-1], k)


def logit_lens(hidden: xr.DataArray, lens: Lens, k: int = 5, block_tokens: int = 64) -> xr.Dataset:
    """Top-k decoded tokens of every hidden state in `hidden` (dims ..., token, d_model): `token_id` and `logit`
    (..., token, k), lazy. Each dask task holds at most `block_tokens` x vocab logits."""
    hidden = hidden.chunk({d: 1 for d in hidden.dims if d not in (TOKEN, D_MODEL)} | {TOKEN: block_tokens, D_MODEL: -1})

    def block_top(x: np.ndarray) -> np.ndarray:
        ids, values = top_tokens(x, lens, k, block_tokens)
        return np.stack([ids.astype(np.float64), values.astype(np.float64)], axis=-2)

    both = xr.apply_ufunc(block_top, hidden, input_core_dims=[[D_MODEL]], output_core_dims=[["field", "k"]],
                          dask="parallelized", output_dtypes=[np.float64],
                          dask_gufunc_kwargs={"output_sizes": {"field": 2, "k": k}})
    return xr.Dataset({TOKEN_ID: both.isel(field=0).astype(np.int64), "logit": both.isel(field=1).astype(np.float32)})


# ---------------------------------------------------------------------------------------------------------
# word matching


def content_words(words: Iterable[str]) -> set[str]:
    """Normalised words, empty ones and English stop words dropped."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    normalised = {normalise_word(w) for w in words}
    return {w for w in normalised if w and w not in ENGLISH_STOP_WORDS}


def caption_words(captions: list[str]) -> set[str]:
    """Content words of captions: lower-cased, punctuation removed, English stop words dropped."""
    return content_words(w for caption in captions for w in caption.split())


def matches(token_text: str, label: str) -> bool:
    """Whether a decoded token names the object class `label`: a whole word of `object_words.object_words(label)`
    (the class name as one word, its head noun, plurals, a few synonyms), never a prefix."""
    return names(token_text, label)


def precision_recall(decoded: list[str], captions: list[str]) -> tuple[float, float]:
    """Precision and recall of the set of decoded words against the captions' content words."""
    words = content_words(decoded)
    truth = caption_words(captions)
    if not words or not truth:
        return float("nan"), float("nan")
    hits = len(words & truth)
    return hits / len(words), hits / len(truth)


# ---------------------------------------------------------------------------------------------------------
# scores over a store


def image_top_tokens(ds: xr.Dataset, lens: Lens, samples: list[int], streams: list[int] | None = None,
                     k: int = 1, part: str = "auto") -> dict[int, tuple[object, np.ndarray]]:
    """For each sample: (its ImageTokens, top-k token ids (stream, n_tokens, k)) of image 0's tokens."""
    from analyses.tokens import image_tokens

    out = {}
    for sample in samples:
        tokens = image_tokens(ds, sample, 0, part=part)
        hidden = ds.hidden.isel(sample=sample, token=tokens.positions)
        if streams is not None:
            hidden = hidden.sel(stream=streams)
        ids, _ = top_tokens(np.asarray(hidden.values), lens, k)
        out[sample] = (tokens, ids)
    return out


OBJECT_TOKENS = "image tokens whose footprint overlaps the object's mask"  # what an object token is, here


def object_token_indices(tokens: ImageTokens, mask: np.ndarray) -> np.ndarray:
    """Indices (into `tokens`) of the image tokens whose box overlaps the (H, W) boolean `mask`."""
    return np.flatnonzero(labels_to_tokens(tokens, mask.astype(np.int64), 2)[:, 1] > 0)


def select_objects(instances: list[tuple[str, np.ndarray]], min_area: float | None = None,
                   max_area: float | None = None) -> dict[str, np.ndarray]:
    """The instances whose mask area (pixels) lies in [min_area, max_area], united per label."""
    selected: dict[str, np.ndarray] = {}
    for label, mask in instances:
        area = int(mask.sum())
        if (min_area is not None and area < min_area) or (max_area is not None and area > max_area):
            continue
        selected[label] = selected[label] | mask if label in selected else mask
    return selected


def image_object_hits(decoded: dict[int, tuple[ImageTokens, np.ndarray]], lens: Lens,
                      instances: dict[int, list[tuple[str, np.ndarray]]], streams: np.ndarray,
                      min_area: float | None = None, max_area: float | None = None) -> xr.Dataset:
    """Per image holding an object in the area range, over its object tokens (pooled over its objects):
    `hits` (sample, stream), tokens whose top-1 decoded word names their object's class; `tokens` (sample,);
    and the label-permutation baseline, the same tokens scored against every class of the data set absent from
    the image: `permuted_hits` (sample, stream), the mean over those classes, and `permuted_best` (sample,), the mean
    over those classes of the best stream's rate. Dims (sample, stream), samples without object tokens left out."""
    data_labels = sorted({label for found in instances.values() for label, _ in found})
    images, hits, tokens, permuted_hits, permuted_best = [], [], [], [], []
    for sample, (image_tokens, ids) in decoded.items():
        found = instances.get(sample, [])
        present = {label for label, _ in found}
        counts = _image_hits(image_tokens, ids, lens, select_objects(found, min_area, max_area),
                             [label for label in data_labels if label not in present])
        if counts is not None:
            images.append(sample)
            for column, value in zip((hits, tokens, permuted_hits, permuted_best), counts, strict=True):
                column.append(value)
    n = len(streams)
    return xr.Dataset({"hits": ((SAMPLE, STREAM), np.reshape(hits, (-1, n))), "tokens": (SAMPLE, np.array(tokens, int)),
                       "permuted_hits": ((SAMPLE, STREAM), np.reshape(permuted_hits, (-1, n))),
                       "permuted_best": (SAMPLE, np.array(permuted_best, float))},
                      coords={SAMPLE: images, STREAM: streams},
                      attrs={"object_tokens": OBJECT_TOKENS, "min_area": min_area, "max_area": max_area,
                             "n_classes": len(data_labels)})


def _image_hits(tokens: ImageTokens, ids: np.ndarray, lens: Lens, objects: dict[str, np.ndarray],
                others: list[str]) -> tuple[np.ndarray, int, np.ndarray, float] | None:
    """One image's (hits per stream, object tokens, mean permuted hits per stream, mean permuted best rate), or
    None when none of its tokens lies on a selected object."""
    n_streams = ids.shape[0]
    hits, permuted, count = np.zeros(n_streams), np.zeros((len(others), n_streams)), 0
    for label, mask in objects.items():
        where = object_token_indices(tokens, mask)
        words = np.vectorize(normalise_word, otypes=[object])(lens.vocabulary[ids[:, where, 0]])  # (stream, m)
        hits += np.isin(words, list(object_words(label))).sum(axis=1)
        for c, other in enumerate(others):
            permuted[c] += np.isin(words, list(object_words(other))).sum(axis=1)
        count += len(where)
    if not count:
        return None
    if not others:
        return hits, count, np.full(n_streams, np.nan), np.nan
    return hits, count, permuted.mean(axis=0), float((permuted / count).max(axis=1).mean())


@dataclass(frozen=True)
class ObjectHits:
    """The object hit rates of a store, each with n and a 95% interval.

    pooled / pooled_baseline: per stream, object tokens naming their class over all object tokens, pooled over
    images (cluster bootstrap over images), and the same for the permuted labels. per_image: per stream, the mean
    over images of each image's rate. best: Neo et al.'s number, each image's rate at its own best stream,
    averaged over images; best_stream: the mean of those streams (over images with a hit); best_baseline: the
    same maximum taken for the permuted labels; best_difference: best minus best_baseline, paired by image."""

    pooled: xr.Dataset
    pooled_baseline: xr.Dataset
    per_image: xr.Dataset
    best: intervals.Interval
    best_stream: intervals.Interval
    best_baseline: intervals.Interval
    best_difference: intervals.Interval
    n_object_tokens: int

    def as_json(self) -> dict:
        return {"n_images": self.best.n, "n_object_tokens": self.n_object_tokens,
                "per_image_best": {"rate": self.best.as_dict(), "mean_best_stream": self.best_stream.as_dict(),
                                   "permuted_label_baseline": self.best_baseline.as_dict(),
                                   "difference": self.best_difference.as_dict()},
                "pooled": intervals.as_json(self.pooled), "pooled_permuted_label_baseline":
                    intervals.as_json(self.pooled_baseline), "per_image_mean": intervals.as_json(self.per_image)}


def object_hit_scores(table: xr.Dataset, seed: int = 0) -> ObjectHits:
    """Pooled and per-image-best object hit rates of an `image_object_hits` table, with intervals over images."""
    streams = table[STREAM].values
    tokens = table.tokens.values

    def pooled(hits: xr.DataArray) -> xr.Dataset:
        return intervals.stack([intervals.bootstrap_ratio(hits.values[:, s], tokens, seed=seed)
                                for s in range(len(streams))], STREAM, streams)

    rate = table.hits.values / tokens[:, None] if len(tokens) else np.zeros((0, len(streams)))
    best = rate.max(axis=1) if len(tokens) else np.zeros(0)
    best_stream = streams[rate.argmax(axis=1)] if len(tokens) else np.zeros(0)  # ties: the earliest stream
    per_image = intervals.stack([intervals.bootstrap_mean(rate[:, s], seed=seed) for s in range(len(streams))],
                                STREAM, streams)
    return ObjectHits(pooled(table.hits), pooled(table.permuted_hits), per_image,
                      intervals.bootstrap_mean(best, seed=seed), intervals.bootstrap_mean(best_stream[best > 0], seed=seed),
                      intervals.bootstrap_mean(table.permuted_best.values, seed=seed),
                      intervals.paired_difference(best, table.permuted_best.values, seed=seed), int(tokens.sum()))


def object_hit_rate(decoded: dict[int, tuple[ImageTokens, np.ndarray]], lens: Lens,
                    masks: dict[int, dict[str, np.ndarray]], streams: np.ndarray) -> xr.Dataset:
    """Per stream, the fraction of object tokens (image tokens whose box overlaps the object's mask) whose top
    token names the object's class, pooled over all objects of all images; and the best stream."""
    table = image_object_hits(decoded, lens, {s: list(m.items()) for s, m in masks.items()}, streams)
    total = int(table.tokens.sum())
    rate = table.hits.sum(SAMPLE).values / max(total, 1)
    return xr.Dataset({"hit_rate": (STREAM, rate)}, coords={STREAM: streams},
                      attrs={"n_object_tokens": total, "best_stream": int(streams[int(np.argmax(rate))]) if total else -1})


def caption_scores(decoded: dict[int, tuple[ImageTokens, np.ndarray]], lens: Lens, captions: dict[int, list[str]],
                   streams: np.ndarray) -> xr.Dataset:
    """Per (sample, stream), precision and recall of the image tokens' top-1 decoded words against the caption
    words (Wei ch. 3); NaN for images without captions."""
    precision = np.full((len(decoded), len(streams)), np.nan)
    recall = np.full_like(precision, np.nan)
    for row, (sample, (_, ids)) in enumerate(decoded.items()):
        for s in range(len(streams)):
            precision[row, s], recall[row, s] = precision_recall(list(lens.vocabulary[ids[s, :, 0]]), captions.get(sample, []))
    return xr.Dataset({"precision": ((SAMPLE, STREAM), precision), "recall": ((SAMPLE, STREAM), recall)},
                      coords={SAMPLE: list(decoded), STREAM: streams})


def mean_over_images(scores: xr.DataArray, seed: int = 0) -> xr.Dataset:
    """Per stream, the mean of a (sample, stream) score over samples with a bootstrap interval (NaN images left out)."""
    return intervals.stack([intervals.bootstrap_mean(scores.sel({STREAM: s}).values, seed=seed)
                            for s in scores[STREAM].values], STREAM, scores[STREAM].values)
