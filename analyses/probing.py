"""Probing image value tokens (Liu et al. §3.1, §4.2), per layer and KV head.

- few-shot foreground segmentation: a logistic-regression probe trained on the tokens of a few support images
  (token label: at least half its box inside the mask), applied to query images;
- text-token segmentation: image values scored by their dot product with the value of the final text token
  of a class name or referring expression (a text-only capture), min-max normalised per image, cut at 0.5;
- paired choice (BLINK style): the candidate image whose mean-pooled values are most cosine-similar to the
  reference's is chosen.

Segmentations are scored at pixel level (token masks upsampled, nearest) as IoU of foreground and background,
accumulated over query images; mIoU is their mean.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from analyses.tokens import (
    ImageTokens,
    as_units,
    captured_samples,
    image_tokens,
    image_tokens_of,
    labels_to_tokens,
    n_images,
    sample_annotation,
    tokens_to_pixels,
    unit_vectors,
    unit_vectors_of,
)
from store.schema import KV_HEAD, LAYER, VALUES, TokenKind

Truth = Callable[[int], np.ndarray]  # sample -> (H, W) bool foreground of its image 0


def _grid(vectors: xr.DataArray, values: np.ndarray, name: str, attrs: dict) -> xr.DataArray:
    return xr.DataArray(values, dims=(LAYER, KV_HEAD),
                        coords={LAYER: vectors.layer.values, KV_HEAD: vectors.kv_head.values}, name=name, attrs=attrs)


class IoU:
    """Foreground / background intersection and union, accumulated over images."""

    def __init__(self) -> None:
        self.intersection = np.zeros(2)
        self.union = np.zeros(2)

    def add(self, predicted: np.ndarray, truth: np.ndarray) -> None:
        for c, (p, t) in enumerate(((~predicted, ~truth), (predicted, truth))):
            self.intersection[c] += np.logical_and(p, t).sum()
            self.union[c] += np.logical_or(p, t).sum()

    def scores(self) -> tuple[float, float, float]:
        """(background IoU, foreground IoU, mIoU)."""
        iou = np.where(self.union > 0, self.intersection / np.maximum(self.union, 1), 1.0)
        return float(iou[0]), float(iou[1]), float(iou.mean())


def _pixels(tokens: ImageTokens, foreground: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return tokens_to_pixels(tokens, foreground[:, None].astype(np.float64), *shape, order=0)[..., 0] > 0.5


def linear_probe_segmentation(ds: xr.Dataset, support: list[int], query: list[int], truth: Truth, array: str = VALUES,
                              part: str = "auto", layers: list[int] | None = None, C: float = 1.0,
                              seed: int = 0) -> xr.Dataset:
    """Few-shot foreground segmentation with a linear probe per (layer, kv_head): foreground / background IoU
    and mIoU on the query images."""
    from sklearn.linear_model import LogisticRegression

    def load(samples: list[int]):
        tokens = image_tokens_of(ds, [(s, 0) for s in samples], part=part)
        masks = [np.asarray(truth(s), bool) for s in samples]
        labels = [labels_to_tokens(t, m.astype(np.int64), 2)[:, 1] >= 0.5 for t, m in zip(tokens, masks, strict=True)]
        return tokens, masks, labels, unit_vectors_of(ds, array, tokens, layers)

    s_tokens, _, s_labels, s_vectors = load(support)
    q_tokens, q_masks, _, q_vectors = load(query)
    y = np.concatenate(s_labels)
    if y.all() or not y.any():
        raise ValueError("the support images need both foreground and background tokens")
    shape = s_vectors[0].shape[:2]
    scores = {name: np.zeros(shape) for name in ("iou_background", "iou_foreground", "miou")}
    for li in range(shape[0]):
        for hi in range(shape[1]):
            x = np.concatenate([v.values[li, hi] for v in s_vectors])
            probe = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x, y)
            iou = IoU()
            for tokens, mask, vectors in zip(q_tokens, q_masks, q_vectors, strict=True):
                iou.add(_pixels(tokens, probe.predict(vectors.values[li, hi]), mask.shape), mask)
            scores["iou_background"][li, hi], scores["iou_foreground"][li, hi], scores["miou"][li, hi] = iou.scores()
    attrs = {"array": array, "n_support": len(support), "n_query": len(query), "C": C}
    return xr.Dataset({k: _grid(s_vectors[0], v, k, {}) for k, v in scores.items()}, attrs=attrs)


def final_text_token(ds: xr.Dataset, sample: int) -> int:
    """Token-axis index of the last text token of a sample (the class name's or expression's final token when
    captured with a raw `{image}{text}` template)."""
    kind = ds.kind.values[sample]
    text = np.flatnonzero(kind == TokenKind.TEXT)
    if not len(text):
        raise ValueError(f"sample {sample} has no text tokens")
    return int(text[-1])


def text_segmentation(image_ds: xr.Dataset, samples: list[int], text_ds: xr.Dataset, text_sample: Callable[[int], int],
                      truth: Truth, array: str = VALUES, part: str = "auto", layers: list[int] | None = None) -> xr.Dataset:
    """Segmentation by dot product with a text token's value, per (layer, kv_head): `text_sample(s)` is the sample of
    `text_ds` (a text-only capture of the class name / expression) whose final text token segments image sample s."""
    iou: dict[tuple[int, int], IoU] = {}
    grid_like = None
    for sample in samples:
        tokens = image_tokens(image_ds, sample, 0, part=part)
        vectors = unit_vectors(image_ds, array, tokens, layers)  # (layer, kv_head, n, d)
        t = text_sample(sample)
        query = as_units(text_ds[array]).isel(sample=t, token=final_text_token(text_ds, t))
        query = query.sel(layer=vectors.layer.values).astype(np.float32).values  # (layer, kv_head, d)
        scores = np.einsum("lhnd,lhd->lhn", vectors.values, query)
        mask = np.asarray(truth(sample), bool)
        grid_like = vectors
        for li in range(scores.shape[0]):
            for hi in range(scores.shape[1]):
                s = scores[li, hi]
                normalised = (s - s.min()) / max(s.max() - s.min(), 1e-12)
                iou.setdefault((li, hi), IoU()).add(_pixels(tokens, normalised >= 0.5, mask.shape), mask)
    if grid_like is None:
        raise ValueError("no samples to segment")
    miou = np.zeros(grid_like.shape[:2])
    for (li, hi), acc in iou.items():
        miou[li, hi] = acc.scores()[2]
    return xr.Dataset({"miou": _grid(grid_like, miou, "miou", {})}, attrs={"array": array, "n_images": len(samples)})


@dataclass(frozen=True)
class ChoiceTrial:
    """A reference image and candidates, each (sample, image index); `answer` indexes `candidates`."""

    reference: tuple[int, int]
    candidates: list[tuple[int, int]]
    answer: int


def choice_trials(ds: xr.Dataset) -> list[ChoiceTrial]:
    """Trials from annotations: samples with 3+ images and an `answer` (index into `images`, the first image being
    the reference)."""
    trials = []
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        count = n_images(ds, sample)
        if "answer" in annotation and count >= 3:
            trials.append(ChoiceTrial((int(sample), 0), [(int(sample), i) for i in range(1, count)],
                                      int(annotation["answer"]) - 1))
    return trials


def paired_choice(ds: xr.Dataset, trials: list[ChoiceTrial], array: str = VALUES, part: str = "auto",
                  layers: list[int] | None = None) -> xr.Dataset:
    """Accuracy per (layer, kv_head) of choosing the candidate whose mean-pooled image values are most
    cosine-similar to the reference's."""
    if not trials:
        raise ValueError("no choice trials (samples with 3+ images and an 'answer')")
    correct = None
    grid_like = None
    for trial in trials:
        pooled = []
        for sample, image in [trial.reference, *trial.candidates]:
            vectors = unit_vectors(ds, array, image_tokens(ds, sample, image, part=part), layers)
            grid_like = vectors
            mean = vectors.values.mean(axis=2)  # (layer, kv_head, d)
            pooled.append(mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12))
        similarity = np.stack([(pooled[0] * c).sum(-1) for c in pooled[1:]])  # (candidates, layer, kv_head)
        hit = similarity.argmax(axis=0) == trial.answer
        correct = hit.astype(np.int64) if correct is None else correct + hit
    return xr.Dataset({"accuracy": _grid(grid_like, correct / len(trials), "accuracy", {})},
                      attrs={"array": array, "n_trials": len(trials)})
