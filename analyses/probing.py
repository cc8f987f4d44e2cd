"""Probing image value tokens (Liu et al. §3.1, §4.2), per layer and KV head.

- few-shot foreground segmentation (Pascal-5i protocol): seeded episodes, each a query image of a class and
  `shots` (5) other images of the class as support; a logistic-regression probe trained on the support's tokens
  (token label: at least half its box inside the class mask) segments the query. Foreground intersection and union
  are summed per class over its episodes; the score is their ratio averaged over classes (the benchmark's mIoU,
  not the mean of foreground and background IoU);
- text-token segmentation: image values scored by their dot product with the value of the final text token
  of a class name or referring expression (a text-only capture), min-max normalised per image, cut at 0.5; scored
  the same way (foreground IoU per class, averaged over classes);
- paired choice (BLINK style): the candidate image whose mean-pooled values are most cosine-similar to the
  reference's is chosen.

Each returns per-unit (episode, image, trial) counts, so that the best head can be chosen on one split of the
units and reported on the other with a 95% interval (`held_out_*`; see `analyses.heads`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import xarray as xr

from analyses import heads, intervals
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
from store.schema import KV_HEAD, LAYER, SAMPLE, VALUES, TokenKind

Truth = Callable[[int], np.ndarray]  # sample -> (H, W) bool foreground of its image 0
ClassTruth = Callable[[int, str], np.ndarray]  # (sample, label) -> (H, W) bool mask of the label in image 0
EPISODE, TRIAL, UNIT_LABEL, UNIT_SPLIT = "episode", "trial", "label", "split"


def _grid(vectors: xr.DataArray, values: np.ndarray, name: str, attrs: dict) -> xr.DataArray:
    return xr.DataArray(values, dims=(LAYER, KV_HEAD),
                        coords={LAYER: vectors.layer.values, KV_HEAD: vectors.kv_head.values}, name=name, attrs=attrs)


def _pixels(tokens: ImageTokens, foreground: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return tokens_to_pixels(tokens, foreground[:, None].astype(np.float64), *shape, order=0)[..., 0] > 0.5


# ---------------------------------------------------------------------------------------------------------
# foreground IoU per class


def class_mean_iou(intersection: np.ndarray, union: np.ndarray, classes: np.ndarray) -> float:
    """Mean over classes of sum(intersection) / sum(union) over each class's units (classes without union left out)."""
    codes = np.unique(np.asarray(classes), return_inverse=True)[1]
    inter = np.bincount(codes, weights=intersection)
    total = np.bincount(codes, weights=union)
    return float(np.mean(inter[total > 0] / total[total > 0])) if (total > 0).any() else float("nan")


def foreground_miou(counts: xr.Dataset, split: str | None = None) -> xr.DataArray:
    """(layer, kv_head) mean over classes of foreground IoU from per-unit `intersection` / `union` (unit, layer,
    kv_head) with a `label` per unit, over the units of `split` (all when None)."""
    if split is not None:
        counts = counts.isel({counts.intersection.dims[0]: np.flatnonzero(counts[UNIT_SPLIT].values == split)})
    inter, union = counts.intersection.values, counts.union.values
    labels = counts[UNIT_LABEL].values
    grid = np.full(inter.shape[1:], np.nan)
    for li, hi in np.ndindex(*grid.shape):
        grid[li, hi] = class_mean_iou(inter[:, li, hi], union[:, li, hi], labels)
    return xr.DataArray(grid, dims=(LAYER, KV_HEAD), coords={LAYER: counts.layer.values,
                                                             KV_HEAD: counts.kv_head.values}, name="miou")


def held_out_miou(counts: xr.Dataset, seed: int = 0) -> heads.HeldOut:
    """The head with the best class-mean foreground IoU on the selection units, and its class-mean IoU on the report
    units with a bootstrap interval over them."""
    layer, head = heads.best_head(foreground_miou(counts, heads.SELECTION))
    report = counts.isel({counts.intersection.dims[0]: np.flatnonzero(counts[UNIT_SPLIT].values == heads.REPORT)})
    one = report.sel({LAYER: layer, KV_HEAD: head})
    codes = np.unique(one[UNIT_LABEL].values, return_inverse=True)[1].astype(np.float64)
    interval = intervals.bootstrap(lambda i, u, c: class_mean_iou(i, u, c.astype(np.int64)),
                                   (one.intersection.values, one.union.values, codes), seed=seed,
                                   method="bootstrap over units of the class-mean IoU")
    selection = float(foreground_miou(counts, heads.SELECTION).sel({LAYER: layer, KV_HEAD: head}))
    return heads.HeldOut(layer, head, selection, interval)


def _counts(intersection: np.ndarray, union: np.ndarray, unit: str, labels: list[str], splits: np.ndarray,
            layers: np.ndarray, kv_heads: np.ndarray, attrs: dict) -> xr.Dataset:
    dims = (unit, LAYER, KV_HEAD)
    return xr.Dataset({"intersection": (dims, intersection), "union": (dims, union)},
                      coords={UNIT_LABEL: (unit, labels), UNIT_SPLIT: (unit, splits.astype(str)), LAYER: layers,
                              KV_HEAD: kv_heads}, attrs=attrs)


# ---------------------------------------------------------------------------------------------------------
# few-shot foreground segmentation


@dataclass(frozen=True)
class Episode:
    """One few-shot task: segment class `label` in image `query` after seeing it in the `support` images."""

    label: str
    support: tuple[int, ...]
    query: int
    split: str  # heads.SELECTION or heads.REPORT: which half of the class's images the query comes from


def episodes(sets: dict[str, list[int]], shots: int = 5, n_episodes: int = 50, seed: int = 0) -> list[Episode]:
    """`n_episodes` seeded episodes per split, the classes taken in turn. Each class's images are halved (seeded)
    into selection and report queries; the support is `shots` other images of the class. Classes with fewer than
    shots + 2 images are left out (each split needs a query, each query `shots` others)."""
    rng = np.random.default_rng(seed)
    usable = {label: sorted(images) for label, images in sorted(sets.items()) if len(images) >= shots + 2}
    if not usable:
        raise ValueError(f"no class has {shots + 2} images ({shots}-shot episodes need a query of each split and "
                         f"{shots} support images)")
    queries = {label: dict(zip((heads.SELECTION, heads.REPORT), np.array_split(rng.permutation(images), 2), strict=True))
               for label, images in usable.items()}
    out = []
    labels = list(usable)
    for split in (heads.SELECTION, heads.REPORT):
        for index in range(n_episodes):
            label = labels[index % len(labels)]
            query = int(rng.choice(queries[label][split]))
            others = [s for s in usable[label] if s != query]
            support = tuple(int(s) for s in rng.choice(others, shots, replace=False))
            out.append(Episode(label, support, query, split))
    return out


def _fit_predict(x: np.ndarray, y: np.ndarray, query: np.ndarray, C: float, seed: int) -> np.ndarray:
    """The probe's token labels for `query`; a support of one class predicts that class."""
    from sklearn.linear_model import LogisticRegression

    if y.all() or not y.any():
        return np.full(len(query), bool(y[0]) if len(y) else False)
    return LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(x, y).predict(query).astype(bool)


def linear_probe_segmentation(ds: xr.Dataset, tasks: list[Episode], truth: ClassTruth, array: str = VALUES,
                              part: str = "auto", layers: list[int] | None = None, C: float = 1.0,
                              seed: int = 0) -> xr.Dataset:
    """Few-shot foreground segmentation with a linear probe per (episode, layer, kv_head): `intersection` and
    `union` (pixels) of the predicted and true foreground of each episode's query."""
    samples = sorted({s for task in tasks for s in (*task.support, task.query)})
    tokens = dict(zip(samples, image_tokens_of(ds, [(s, 0) for s in samples], part=part), strict=True))
    pairs = {(s, task.label) for task in tasks for s in (*task.support, task.query)}
    masks = {(s, label): np.asarray(truth(s, label), bool) for s, label in pairs}
    token_labels = {key: labels_to_tokens(tokens[key[0]], mask.astype(np.int64), 2)[:, 1] >= 0.5
                    for key, mask in masks.items()}
    all_layers = as_units(ds[array]).layer.values if layers is None else np.asarray(layers)
    n_heads = as_units(ds[array]).sizes[KV_HEAD]
    inter = np.zeros((len(tasks), len(all_layers), n_heads))
    union = np.zeros_like(inter)
    for li, layer in enumerate(all_layers):
        vectors = dict(zip(samples, unit_vectors_of(ds, array, [tokens[s] for s in samples], [int(layer)]), strict=True))
        for hi in range(n_heads):
            for t, task in enumerate(tasks):
                x = np.concatenate([vectors[s].values[0, hi] for s in task.support])
                y = np.concatenate([token_labels[(s, task.label)] for s in task.support])
                predicted = _fit_predict(x, y, vectors[task.query].values[0, hi], C, seed)
                mask = masks[(task.query, task.label)]
                pixels = _pixels(tokens[task.query], predicted, mask.shape)
                inter[t, li, hi], union[t, li, hi] = (pixels & mask).sum(), (pixels | mask).sum()
    attrs = {"array": array, "shots": len(tasks[0].support), "n_episodes": len(tasks), "C": C}
    return _counts(inter, union, EPISODE, [t.label for t in tasks], np.array([t.split for t in tasks]), all_layers,
                   vectors[samples[0]].kv_head.values, attrs)


def final_text_token(ds: xr.Dataset, sample: int) -> int:
    """Token-axis index of the last text token of a sample (the class name's or expression's final token when
    captured with a raw `{image}{text}` template)."""
    kind = ds.kind.values[sample]
    text = np.flatnonzero(kind == TokenKind.TEXT)
    if not len(text):
        raise ValueError(f"sample {sample} has no text tokens")
    return int(text[-1])


def text_segmentation(image_ds: xr.Dataset, samples: list[int], text_ds: xr.Dataset, text_sample: Callable[[int], int],
                      truth: Truth, array: str = VALUES, part: str = "auto", layers: list[int] | None = None,
                      label: str = "", splits: np.ndarray | None = None) -> xr.Dataset:
    """Segmentation by dot product with a text token's value, per (sample, layer, kv_head): `intersection` and `union`
    of the predicted and true foreground pixels, and `iou`, their sums' ratio per head. `text_sample(s)` is the
    sample of `text_ds` (a text-only capture of the class name / expression) whose final text token segments image
    sample s; `label` and `splits` (heads.SELECTION / REPORT per sample) go into the unit coordinates."""
    inter, union, grid_like = [], [], None
    for sample in samples:
        tokens = image_tokens(image_ds, sample, 0, part=part)
        vectors = unit_vectors(image_ds, array, tokens, layers)  # (layer, kv_head, n, d)
        t = text_sample(sample)
        query = as_units(text_ds[array]).isel(sample=t, token=final_text_token(text_ds, t))
        query = query.sel(layer=vectors.layer.values).astype(np.float32).values  # (layer, kv_head, d)
        scores = np.einsum("lhnd,lhd->lhn", vectors.values, query)
        low, high = scores.min(axis=2, keepdims=True), scores.max(axis=2, keepdims=True)
        foreground = (scores - low) / np.maximum(high - low, 1e-12) >= 0.5
        mask = np.asarray(truth(sample), bool)
        grid_like = vectors
        pixels = [[_pixels(tokens, foreground[li, hi], mask.shape) for hi in range(scores.shape[1])]
                  for li in range(scores.shape[0])]
        inter.append([[(p & mask).sum() for p in row] for row in pixels])
        union.append([[(p | mask).sum() for p in row] for row in pixels])
    if grid_like is None:
        raise ValueError("no samples to segment")
    splits = np.full(len(samples), heads.REPORT, dtype=object) if splits is None else np.asarray(splits)
    counts = _counts(np.array(inter, float), np.array(union, float), SAMPLE, [label] * len(samples), splits,
                     grid_like.layer.values, grid_like.kv_head.values, {"array": array, "n_images": len(samples)})
    counts = counts.assign_coords({SAMPLE: samples})
    return counts.assign(iou=counts.intersection.sum(SAMPLE) / counts.union.sum(SAMPLE))


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
                  layers: list[int] | None = None, seed: int = 0) -> xr.Dataset:
    """Per (trial, layer, kv_head), `correct`: whether the candidate whose mean-pooled image values are most
    cosine-similar to the reference's is the answer; `accuracy`, its mean per head; `chance`, the mean over trials
    of 1 / candidates. Trials carry a seeded selection / report split (`heads.split`)."""
    if not trials:
        raise ValueError("no choice trials (samples with 3+ images and an 'answer')")
    correct, grid_like = [], None
    for trial in trials:
        pooled = []
        for sample, image in [trial.reference, *trial.candidates]:
            vectors = unit_vectors(ds, array, image_tokens(ds, sample, image, part=part), layers)
            grid_like = vectors
            mean = vectors.values.mean(axis=2)  # (layer, kv_head, d)
            pooled.append(mean / np.maximum(np.linalg.norm(mean, axis=-1, keepdims=True), 1e-12))
        similarity = np.stack([(pooled[0] * c).sum(-1) for c in pooled[1:]])  # (candidates, layer, kv_head)
        correct.append(similarity.argmax(axis=0) == trial.answer)
    result = xr.Dataset({"correct": ((TRIAL, LAYER, KV_HEAD), np.array(correct))},
                        coords={LAYER: grid_like.layer.values, KV_HEAD: grid_like.kv_head.values,
                                UNIT_SPLIT: (TRIAL, heads.split(len(trials), seed).astype(str))},
                        attrs={"array": array, "n_trials": len(trials),
                               "chance": float(np.mean([1 / len(t.candidates) for t in trials]))})
    return result.assign(accuracy=result.correct.mean(TRIAL))


def held_out_accuracy(result: xr.Dataset) -> heads.HeldOut:
    """The head most often right on the selection trials, and its accuracy on the report trials with the exact
    binomial interval."""
    selection = result.correct.isel(trial=np.flatnonzero(result[UNIT_SPLIT].values == heads.SELECTION)).mean(TRIAL)
    layer, head = heads.best_head(selection)
    report = result.correct.isel(trial=np.flatnonzero(result[UNIT_SPLIT].values == heads.REPORT))
    hits = report.sel({LAYER: layer, KV_HEAD: head}).values
    return heads.HeldOut(layer, head, float(selection.sel({LAYER: layer, KV_HEAD: head})),
                         intervals.binomial(int(hits.sum()), len(hits)))
