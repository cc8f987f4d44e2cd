"""Logit lens (Neo et al. §4.1; Wei ch. 3): the final RMS norm and the unembedding applied to stored hidden
states, from the store's `lens/` group, streamed in token blocks so the vocab x tokens matrix never exists.

The norm reproduces the model's arithmetic: normalise in float32, round to the compute dtype, multiply by
the weight in that dtype; the product with the unembedding is then taken in float32.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import xarray as xr

from store.schema import (
    ATTR_NORM_EPS,
    ATTR_NORM_KIND,
    D_MODEL,
    LENS_NORM_WEIGHT,
    LENS_UNEMBEDDING,
    LENS_UNEMBEDDING_BIAS,
    LENS_VOCABULARY,
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


def normalise_word(text: str) -> str:
    """Lower-case, strip whitespace and punctuation (the decoded-token side of a comparison)."""
    return re.sub(r"[^\w]", "", text.strip().lower())


def content_words(words: Iterable[str]) -> set[str]:
    """Normalised words, empty ones and English stop words dropped."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    normalised = {normalise_word(w) for w in words}
    return {w for w in normalised if w and w not in ENGLISH_STOP_WORDS}


def caption_words(captions: list[str]) -> set[str]:
    """Content words of captions: lower-cased, punctuation removed, English stop words dropped."""
    return content_words(w for caption in captions for w in caption.split())


def matches(token_text: str, word: str, min_prefix: int = 3) -> bool:
    """Whether a decoded token names `word`: equal after normalising, or a leading sub-word of at least
    `min_prefix` characters (class names may span several tokens)."""
    token, word = normalise_word(token_text), normalise_word(word)
    return bool(token) and (token == word or (len(token) >= min_prefix and word.startswith(token)))


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


def object_hit_rate(decoded: dict[int, tuple[object, np.ndarray]], lens: Lens, masks: dict[int, dict[str, np.ndarray]],
                    streams: np.ndarray) -> xr.Dataset:
    """Per stream, the fraction of object tokens (image tokens whose box overlaps the object's mask) whose top
    token names the object's class (Neo et al. §4.1), pooled over all objects; and the best stream."""
    from analyses.tokens import labels_to_tokens

    hits = np.zeros(len(streams))
    total = 0
    for sample, (tokens, ids) in decoded.items():
        for label, mask in masks.get(sample, {}).items():
            overlap = labels_to_tokens(tokens, mask.astype(np.int64), 2)[:, 1] > 0
            if not overlap.any():
                continue
            words = lens.vocabulary[ids[:, overlap, 0]]  # (stream, n_object_tokens)
            hits += np.vectorize(lambda w, label=label: matches(w, label))(words).sum(axis=1)
            total += int(overlap.sum())
    rate = hits / max(total, 1)
    return xr.Dataset({"hit_rate": (STREAM, rate)}, coords={STREAM: streams},
                      attrs={"n_object_tokens": total, "best_stream": int(streams[int(np.argmax(rate))]) if total else -1})


def caption_scores(decoded: dict[int, tuple[object, np.ndarray]], lens: Lens, captions: dict[int, list[str]],
                   streams: np.ndarray) -> xr.Dataset:
    """Per stream, mean precision and recall of the image tokens' top-1 decoded words against caption words."""
    precision = np.full((len(decoded), len(streams)), np.nan)
    recall = np.full_like(precision, np.nan)
    for row, (sample, (_, ids)) in enumerate(decoded.items()):
        for s in range(len(streams)):
            precision[row, s], recall[row, s] = precision_recall(list(lens.vocabulary[ids[s, :, 0]]), captions.get(sample, []))
    return xr.Dataset({"precision": (STREAM, np.nanmean(precision, axis=0)), "recall": (STREAM, np.nanmean(recall, axis=0))},
                      coords={STREAM: streams}, attrs={"n_samples": len(decoded)})
