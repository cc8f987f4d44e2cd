"""Correspondence recovers known transforms where tokens depend only on their patch; J and F on known masks."""

from __future__ import annotations

import numpy as np
import pytest

import store.reader
from analyses.correspondence import (
    KeypointPair,
    boundary_measure,
    keypoint_pairs,
    object_match_rate,
    propagate_labels,
    region_similarity,
    score_video,
    semantic_correspondence,
    temporal_correspondence,
    videos,
)
from analyses.grid_intervals import held_out, ratio_grid


def test_pairs_and_videos_come_from_the_annotations(local_patch_store):
    ds = store.reader.open(local_patch_store)
    pairs = keypoint_pairs(ds)
    assert [(p.source, p.target) for p in pairs] == [((0, 0), (0, 1)), ((1, 0), (1, 1))]
    assert pairs[0].source_points.shape == (16, 2)
    found = videos(ds)
    assert [(v.name, v.frames) for v in found] == [("roll", [(2, 0), (3, 0), (4, 0), (5, 0), (6, 0)])]
    assert found[0].masks[0].shape == (56, 56) and set(np.unique(found[0].masks[0])) == {0, 1}


@pytest.mark.parametrize("array", ["values", "keys_prerope", "hidden"])
def test_flip_and_shift_are_recovered_at_the_patch_local_layer(local_patch_store, array):
    ds = store.reader.open(local_patch_store)
    result = semantic_correspondence(ds, keypoint_pairs(ds), array=array, layers=[0])
    assert result.attrs["n_keypoints"] == 32 and result.attrs["n_unusable"] == 0
    assert (result.pck.values == 1.0).all()  # every keypoint lands on its transformed patch


def test_post_rope_keys_carry_position(local_patch_store):
    """Cached keys are rotated by their position, so identical patches at other positions no longer match."""
    ds = store.reader.open(local_patch_store)
    result = semantic_correspondence(ds, keypoint_pairs(ds), array="keys", layers=[0])
    assert result.pck.values.min() < 1.0


def test_a_wrong_mapping_scores_zero(local_patch_store):
    """The control: claiming the flipped image was not flipped puts every keypoint a patch or more away."""
    ds = store.reader.open(local_patch_store)
    flip = keypoint_pairs(ds)[0]
    unflipped = KeypointPair(flip.source, flip.target, flip.source_points, flip.source_points)
    result = semantic_correspondence(ds, [unflipped], array="values", layers=[0])
    assert (result.pck.values == 0.0).all()


def test_object_tokens_match_the_moved_object_box(local_patch_store):
    """Flipped 56-pixel image, 4 x 4 patches: the top-left quarter's tokens land in the top-right quarter."""
    ds = store.reader.open(local_patch_store)
    flip = keypoint_pairs(ds)[0]
    moved = KeypointPair(flip.source, flip.target, flip.source_points, flip.target_points,
                         target_box=(29.0, 0.0, 56.0, 27.0), source_box=(0.0, 0.0, 27.0, 27.0))
    result = object_match_rate(ds, [moved], array="values", layers=[0])
    assert result.attrs["n_source_tokens"] == 4 and result.attrs["chance"] == 0.25
    assert (result.match_rate.values == 1.0).all()
    assert result.pair_source_tokens.values.tolist() == [4] and result.pair_chance.values.tolist() == [1.0]
    assert (result.pair_matched.values == 4).all()
    unmoved = KeypointPair(flip.source, flip.target, flip.source_points, flip.target_points,
                           target_box=(0.0, 0.0, 27.0, 27.0), source_box=(0.0, 0.0, 27.0, 27.0))
    assert (object_match_rate(ds, [unmoved], array="values", layers=[0]).match_rate.values == 0.0).all()


def test_temporal_propagation_follows_the_moving_mask(local_patch_store):
    ds = store.reader.open(local_patch_store)
    exact = temporal_correspondence(ds, videos(ds), layers=[0], topk=1, upsample="nearest")
    assert (exact.J.values == 1.0).all() and (exact.F.values == 1.0).all() and (exact.JF.values == 1.0).all()
    assert exact.J_video.dims == ("video", "layer", "kv_head") and list(exact.video.values) == ["roll"]
    smooth = temporal_correspondence(ds, videos(ds), layers=[0])  # defaults: top-5, bilinear upsampling
    assert (smooth.J.values > 0.8).all()


def test_keypoints_outside_every_token_are_unusable(local_patch_store):
    ds = store.reader.open(local_patch_store)
    outside = KeypointPair((0, 0), (0, 1), np.array([[-5.0, 3.0], [7.0, 7.0], [np.nan, 1.0]]),
                           np.array([[1.0, 1.0], [49.0, 7.0], [1.0, 1.0]]))
    result = semantic_correspondence(ds, [outside], layers=[0])
    assert result.attrs["n_keypoints"] == 1 and result.attrs["n_unusable"] == 2 and (result.pck.values == 1).all()


def test_region_and_boundary_measures():
    truth = np.zeros((100, 100), bool)
    truth[20:60, 20:60] = True
    shifted = np.roll(truth, 10, axis=1)
    assert region_similarity(truth, truth) == 1.0
    assert region_similarity(shifted, truth) == pytest.approx(30 * 40 / (50 * 40))
    assert boundary_measure(truth, truth) == 1.0
    assert boundary_measure(np.roll(truth, 1, axis=0), truth) == 1.0  # within the 0.008 x diagonal tolerance (2 px)
    assert boundary_measure(shifted, truth) < 0.6
    assert region_similarity(np.zeros_like(truth), np.zeros_like(truth)) == 1.0
    labels = [truth.astype(int)] * 4
    assert score_video(labels, labels) == (1.0, 1.0)


def test_label_propagation_weights():
    """One target token equally similar to two context tokens of different labels gets half of each."""
    features = [np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([[1.0, 0.0]])]
    grids = [np.array([[0, 0], [0, 1]]), np.array([[0, 0]])]
    labels = propagate_labels(features, grids, np.array([[1.0, 0.0], [0.0, 1.0]]), topk=2)
    np.testing.assert_allclose(labels[1], [[0.5, 0.5]])
    labels = propagate_labels(features, grids, np.array([[1.0, 0.0], [0.0, 1.0]]), topk=2, radius=0)
    np.testing.assert_allclose(labels[1], [[1.0, 0.0]])  # the other token is outside the neighbourhood


def test_pck_interval_resamples_pairs(local_patch_store):
    """Values of a patch-local model match each patch exactly: a source point predicts the centre of its patch's
    image in the target. Claimed targets off by 0, 5, 6 px (flip) and 0, 14 px (roll) from those predictions, at a
    tolerance of 0.1 x 56 px: 2 of 3 and 1 of 2 correct. PCK pools keypoints (3 / 5); the interval resamples the
    two pairs: (flip, flip) 2/3, (roll, roll) 1/2, each drawn a quarter of the time, so the 2.5th and 97.5th
    percentiles are exactly those."""
    ds = store.reader.open(local_patch_store)
    flip, roll = keypoint_pairs(ds)
    source = np.array([[7.0, 7.0], [21.0, 7.0], [35.0, 21.0]])
    predicted = np.array([[49.0, 7.0], [35.0, 7.0], [21.0, 21.0]])  # the mirrored patch centres
    claimed = predicted + np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 6.0]])
    flip_hits = int((np.linalg.norm(claimed - predicted, axis=1) <= 0.1 * 56).sum())
    rolled = KeypointPair(roll.source, roll.target, np.array([[7.0, 7.0], [21.0, 35.0]]),
                          np.array([[21.0, 7.0], [35.0, 49.0]]))  # the second is one patch below its prediction
    result = semantic_correspondence(ds, [KeypointPair(flip.source, flip.target, source, claimed), rolled],
                                     array="values", layers=[0])
    assert flip_hits == 2 and result.pair_keypoints.values.tolist() == [3, 2]
    assert (result.pair_correct.values[:, 0] == np.array([2, 1])[:, None]).all()
    grid = ratio_grid(result.pair_correct, result.pair_keypoints)
    assert np.allclose(grid.estimate.values, 3 / 5) and np.allclose(grid.estimate.values, result.pck.values)
    assert np.allclose(grid.low.values, 1 / 2) and np.allclose(grid.high.values, 2 / 3) and (grid.n.values == 2).all()
    chosen = held_out(result.pair_correct, result.pair_keypoints)  # one pair chooses the head, the other reports it
    assert chosen.report.n == 1 and chosen.report.estimate in (2 / 3, 1 / 2)

