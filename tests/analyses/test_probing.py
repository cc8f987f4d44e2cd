"""Probing on planted tokens: separable by construction -> IoU near 1; random tokens -> near chance. The benchmark's
mIoU (foreground IoU per class, averaged over classes) and the held-out choice of the best head against hand-computed
values; seeded 5-shot episodes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from analyses.heads import REPORT, SELECTION
from analyses.probing import (
    ChoiceTrial,
    choice_trials,
    class_mean_iou,
    episodes,
    foreground_miou,
    held_out_accuracy,
    held_out_miou,
    linear_probe_segmentation,
    paired_choice,
    text_segmentation,
)
from store.schema import ImagePart, SampleStatus, TokenKind

GRID, PIXELS, DIM = 6, 60, 8


def fake_store(n_samples: int, seed: int = 0, n_images: int = 1, text_tokens: int = 2):
    """A store-shaped Dataset: per image a 6 x 6 token grid over 60 x 60 pixels, then `text_tokens` text tokens.
    Layer 0 / head 0 values are +u on the planted foreground tokens and -u elsewhere (plus noise); every other
    (layer, head) is noise. Returns the Dataset and each sample's image-0 foreground mask."""
    rng = np.random.RandomState(seed)
    n_image_tokens = GRID * GRID
    n_tokens = n_images * n_image_tokens + text_tokens
    values = rng.normal(0, 1, (n_samples, 2, 2, n_tokens, DIM)).astype(np.float32)
    u = rng.normal(0, 1, DIM)
    masks = []
    for sample in range(n_samples):
        r0, c0 = rng.randint(0, 3, size=2)
        fg_tokens = np.zeros((GRID, GRID), bool)
        fg_tokens[r0:r0 + 3, c0:c0 + 3] = True
        masks.append(np.kron(fg_tokens, np.ones((10, 10), bool)))
        sign = np.where(fg_tokens.ravel(), 1.0, -1.0)
        values[sample, 0, 0, :n_image_tokens] = sign[:, None] * u + rng.normal(0, 0.3, (n_image_tokens, DIM))
    r, c = np.divmod(np.arange(n_image_tokens), GRID)
    box = np.stack([c / GRID, r / GRID, (c + 1) / GRID, (r + 1) / GRID], axis=1)
    kind = np.array([TokenKind.IMAGE] * (n_images * n_image_tokens) + [TokenKind.TEXT] * text_tokens, np.int8)
    image_index = np.concatenate([np.full(n_image_tokens, i) for i in range(n_images)] + [np.full(text_tokens, -1)])
    tile = lambda a, fill: np.concatenate([np.tile(a, (n_images,) + (1,) * (a.ndim - 1)),  # noqa: E731
                                          np.full((text_tokens,) + a.shape[1:], fill)])
    ds = xr.Dataset(
        {
            "values": (("sample", "layer", "kv_head", "token", "head_dim"), values),
            "kind": (("sample", "token"), np.tile(kind, (n_samples, 1))),
            "image_index": (("sample", "token"), np.tile(image_index, (n_samples, 1)).astype(np.int16)),
            "image_part": (("sample", "token"), np.tile(tile(np.full(n_image_tokens, ImagePart.BASE), -1), (n_samples, 1))),
            "grid_row": (("sample", "token"), np.tile(tile(r, -1), (n_samples, 1))),
            "grid_col": (("sample", "token"), np.tile(tile(c, -1), (n_samples, 1))),
            "token_box": (("sample", "token", "box_coord"), np.tile(tile(box, np.nan), (n_samples, 1, 1))),
            "image_height": (("sample", "image"), np.full((n_samples, n_images), PIXELS)),
            "image_width": (("sample", "image"), np.full((n_samples, n_images), PIXELS)),
            "status": (("sample",), np.full(n_samples, SampleStatus.CAPTURED, np.int8)),
            "annotation": (("sample",), np.array(["{}"] * n_samples, dtype=object)),
        },
        coords={"layer": [0, 1]},
    )
    return ds, masks


def test_planted_linear_probe():
    ds, masks = fake_store(10)
    tasks = episodes({"thing": list(range(10))}, shots=2, n_episodes=6)
    result = linear_probe_segmentation(ds, tasks, truth=lambda s, label: masks[s])
    assert result.intersection.dims == ("episode", "layer", "kv_head") and result.attrs["shots"] == 2
    miou = foreground_miou(result)
    assert float(miou.sel(layer=0, kv_head=0)) > 0.99
    assert (miou.values.ravel()[1:] < 0.7).all()  # chance: the probe cannot beat guessing on noise
    best = held_out_miou(result)
    assert (best.layer, best.kv_head) == (0, 0) and best.report.n == 6 and best.report.estimate > 0.99


def test_foreground_miou_is_the_mean_over_classes_of_summed_iou():
    """Two classes: "a" in episodes 0, 1 (4 + 6 pixels right of 5 + 10 in the union), "b" in episode 2 (1 of 4).
    Pascal-5i's mIoU is (10/15 + 1/4) / 2; the mean of per-episode IoUs or of foreground and background IoU differ."""
    intersection, union, classes = np.array([4.0, 6.0, 1.0]), np.array([5.0, 10.0, 4.0]), np.array(["a", "a", "b"])
    assert class_mean_iou(intersection, union, classes) == pytest.approx((10 / 15 + 1 / 4) / 2)
    counts = xr.Dataset({"intersection": (("episode", "layer", "kv_head"), intersection[:, None, None]),
                         "union": (("episode", "layer", "kv_head"), union[:, None, None])},
                        coords={"label": ("episode", classes), "split": ("episode", [SELECTION] * 3),
                                "layer": [4], "kv_head": [1]})
    assert float(foreground_miou(counts).sel(layer=4, kv_head=1)) == pytest.approx((10 / 15 + 1 / 4) / 2)


def test_the_best_head_is_chosen_on_one_split_and_reported_on_the_other():
    """Head 0 is better on the selection episodes (IoU 0.9 vs 0.5), head 1 on the report episodes (0.3 vs 0.8):
    the reported score is head 0's on the report episodes, 0.3, not the maximum 0.8."""
    iou = np.array([[0.9, 0.5], [0.9, 0.5], [0.3, 0.8], [0.3, 0.8]])  # (episode, head)
    counts = xr.Dataset({"intersection": (("episode", "layer", "kv_head"), 10 * iou[:, None, :]),
                         "union": (("episode", "layer", "kv_head"), np.full((4, 1, 2), 10.0))},
                        coords={"label": ("episode", ["a", "b", "a", "b"]),
                                "split": ("episode", [SELECTION, SELECTION, REPORT, REPORT]), "layer": [0],
                                "kv_head": [0, 1]})
    best = held_out_miou(counts)
    assert (best.layer, best.kv_head, best.selection_score) == (0, 0, pytest.approx(0.9))
    assert best.report.estimate == pytest.approx(0.3) and best.report.n == 2


def test_episodes_are_seeded_five_shot_and_keep_queries_apart():
    sets = {"cat": list(range(10)), "dog": list(range(10, 17)), "few": [20, 21, 22]}
    tasks = episodes(sets, n_episodes=8, seed=3)
    assert tasks == episodes(sets, n_episodes=8, seed=3) and tasks != episodes(sets, n_episodes=8, seed=4)
    assert {t.label for t in tasks} == {"cat", "dog"}  # "few" cannot give 5 support images and two queries
    assert all(len(t.support) == 5 and t.query not in t.support and set(t.support) <= set(sets[t.label])
               for t in tasks)
    for label in ("cat", "dog"):
        chosen = {split: {t.query for t in tasks if t.label == label and t.split == split} for split in (SELECTION, REPORT)}
        assert chosen[SELECTION] and chosen[REPORT] and not chosen[SELECTION] & chosen[REPORT]
    assert sum(t.split == SELECTION for t in tasks) == sum(t.split == REPORT for t in tasks) == 8
    with pytest.raises(ValueError, match="no class has 7 images"):
        episodes({"few": [1, 2, 3]})


def test_text_token_segmentation():
    ds, masks = fake_store(6, seed=1)
    u_direction = ds["values"].values[0, 0, 0, :36][masks[0][::10, ::10].ravel()].mean(axis=0)
    text_values = ds["values"].values.copy()
    text_values[:, 0, 0, -1] = u_direction  # the class name's final text token points at the foreground
    text_ds = ds.copy()
    text_ds["values"] = (("sample", "layer", "kv_head", "token", "head_dim"), text_values)
    result = text_segmentation(ds, list(range(6)), text_ds, lambda s: 0, lambda s: masks[s], label="thing")
    assert float(result.iou.sel(layer=0, kv_head=0)) > 0.99
    assert result.iou.values.ravel()[1:].max() < 0.8
    assert result.label.values.tolist() == ["thing"] * 6 and result.sample.values.tolist() == list(range(6))


def test_paired_choice():
    ds, _ = fake_store(4, seed=2, n_images=3)
    values = ds["values"].values
    values[:, :, :, 36:72] = values[:, :, :, 0:36] + 0.01  # candidate 1 repeats the reference
    ds["values"] = (ds["values"].dims, values)
    annotation = np.array([json.dumps({"answer": 1})] * 4, dtype=object)
    ds["annotation"] = (("sample",), annotation)
    trials = choice_trials(ds)
    assert trials[0] == ChoiceTrial((0, 0), [(0, 1), (0, 2)], 0)
    result = paired_choice(ds, trials)
    assert (result.accuracy.values == 1.0).all() and result.attrs["chance"] == 0.5
    best = held_out_accuracy(result)
    assert best.report.n == 2 and best.report.estimate == 1.0 and best.report.low == pytest.approx(0.025 ** 0.5)
    with pytest.raises(ValueError, match="no choice trials"):
        paired_choice(ds, [])
