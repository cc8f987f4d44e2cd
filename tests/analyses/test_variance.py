"""Input-agnostic keys: a tiny model with planted constant-key heads is flagged exactly; dask equals numpy."""

from __future__ import annotations

import numpy as np
import pytest

import store.reader
from analyses.variance import (
    choose_threshold,
    histogram_valley,
    input_agnostic_keys,
    key_pca,
    key_variance,
    layer_groups,
    matched_positions,
)
from store.schema import ImagePart

from .conftest import PLANTED_HEADS


@pytest.mark.parametrize("array", ["keys", "keys_prerope"])
def test_planted_heads_are_flagged_exactly(planted_variance_store, array):
    ds = store.reader.open(planted_variance_store)
    variance = key_variance(ds, array).compute()
    for layer in variance.layer.values:
        for head in variance.kv_head.values:
            value = float(variance.sel(layer=layer, kv_head=head))
            assert (value == 0.0) == ((int(layer), int(head)) in PLANTED_HEADS)
    for method in ("otsu", "valley"):
        threshold = choose_threshold(variance.values, method)
        keys = input_agnostic_keys(variance, threshold)
        assert sorted(map(tuple, keys["all"])) == sorted(PLANTED_HEADS)
    assert keys["otsu_and_valley_agree"] is True


def test_unedited_model_has_no_constant_key(plain_store):
    variance = key_variance(store.reader.open(plain_store)).compute()
    assert (variance.values > 1e-3).all()


@pytest.mark.parametrize(("fixture", "rtol"), [("plain_store", 1e-6), ("local_patch_store", 1e-10)])
def test_dask_result_equals_numpy(fixture, rtol, request):
    """Pointwise (anyres grid cells at sample-specific positions) and orthogonal paths against a direct loop, for
    float32 keys (summed in float64) and bf16 keys (differences in float32)."""
    ds = store.reader.open(request.getfixturevalue(fixture))
    assert ds["keys"].dtype.itemsize == (2 if fixture == "plain_store" else 4)
    for part in (None, ImagePart.BASE):
        samples, positions, cells = matched_positions(ds, part)
        assert len(cells) == positions.shape[1] and len(samples) == ds.sizes["sample"]
        keys = np.asarray(ds["keys"].values, np.float64)  # (sample, layer, kv_head, token, head_dim)
        gathered = np.stack([keys[s][:, :, positions[i]] for i, s in enumerate(samples)])
        expected = gathered.var(axis=0).sum(axis=-1).mean(axis=-1)
        np.testing.assert_allclose(key_variance(ds, part=part).values, expected, rtol=rtol)
    if fixture == "plain_store":  # the anyres grid cells sit at different sequence positions in different samples
        _, positions, _ = matched_positions(ds, None)
        assert not (positions == positions[0]).all()


def test_same_result_on_a_local_cluster(plain_store):
    from dask.distributed import Client, LocalCluster

    ds = store.reader.open(plain_store)
    threaded = key_variance(ds, part=None).compute()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        distributed = key_variance(store.reader.open(plain_store), part=None).compute()
    np.testing.assert_array_equal(threaded.values, distributed.values)


def test_thresholds_on_a_bimodal_sample():
    rng = np.random.RandomState(0)
    values = np.concatenate([rng.normal(200, 30, 40), rng.normal(600, 40, 72)])  # the paper's modes
    threshold = choose_threshold(values)
    assert 300 < threshold.otsu < 500 and 300 < threshold.valley < 500
    assert choose_threshold(values, "valley").value == threshold.valley
    assert choose_threshold(values, value=450).as_dict()["method"] == "user"
    assert histogram_valley(np.array([1.0, 1.0, 1.0])) is None
    assert choose_threshold(np.array([1.0, 2.0, 10.0, 11.0])).otsu == 6.0  # midway between the separated values


def test_layer_groups():
    assert layer_groups(list(range(28))) == {"early": list(range(8)), "middle": list(range(8, 18)),
                                             "late": list(range(18, 28))}
    assert layer_groups([0, 1, 2, 3], (1, 3)) == {"early": [0], "middle": [1, 2], "late": [3]}


def test_key_pca_puts_both_images_of_a_planted_key_together(planted_variance_store):
    ds = store.reader.open(planted_variance_store)
    pca = key_pca(ds, (0, 1))
    assert pca.dims == ("sample", "layer", "kv_head", "component")
    for layer, head in PLANTED_HEADS:
        points = pca.sel(layer=layer, kv_head=head).values
        assert np.linalg.norm(points[0] - points[1]) < 1e-4
    other = pca.sel(layer=0, kv_head=0).values
    assert np.linalg.norm(other[0] - other[1]) > 1e-2
