"""Input-agnostic keys: a tiny model with planted constant-key heads is flagged exactly; dask equals numpy."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import store.reader
from analyses.variance import (
    bimodality,
    choose_threshold,
    histogram_valley,
    input_agnostic_keys,
    key_pca,
    key_variance,
    layer_groups,
    matched_positions,
)
from store.schema import ImagePart, SampleStatus, TokenKind

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


def hand_built_store(keys: np.ndarray, positions: np.ndarray | None = None) -> xr.Dataset:
    """A store-shaped Dataset of image tokens of image 0 (base view, one grid row): `keys` (sample, token,
    head_dim) for layer 0, KV head 0; KV head 1 is the same constant vector in every sample."""
    n_samples, n_tokens, head_dim = keys.shape
    per_head = np.stack([keys, np.ones_like(keys)], axis=1)[:, None]  # (sample, layer, kv_head, token, head_dim)
    table = {"kind": TokenKind.IMAGE, "image_index": 0, "image_part": ImagePart.BASE, "grid_row": 0}
    dims = ("sample", "token")
    data = {name: (dims, np.full((n_samples, n_tokens), value, np.int16)) for name, value in table.items()}
    data["grid_col"] = (dims, np.tile(np.arange(n_tokens, dtype=np.int16), (n_samples, 1)))
    data["position"] = (dims, np.tile(np.arange(n_tokens), (n_samples, 1)) if positions is None else positions)
    data["status"] = ("sample", np.full(n_samples, SampleStatus.CAPTURED))
    for name in ("keys", "keys_prerope"):
        data[name] = (("sample", "layer", "kv_head", "token", "head_dim"), per_head)
    return xr.Dataset(data, coords={"layer": [0], "kv_head": [0, 1]})


def test_key_variance_is_the_papers_l2_variance():
    """Per position, the variance across samples of each dimension (population variance), summed over the
    dimensions; then the mean over positions."""
    keys = np.array([[[0, 1], [0, 2]], [[1, 1], [0, 4]], [[2, 1], [3, 6]]], np.float64)  # (sample, token, dim)
    # token 0: var(0, 1, 2) = 2/3 and var(1, 1, 1) = 0; token 1: var(0, 0, 3) = 2 and var(2, 4, 6) = 8/3
    expected = ((2 / 3 + 0) + (2 + 8 / 3)) / 2
    variance = key_variance(hand_built_store(keys)).compute()
    assert float(variance.sel(layer=0, kv_head=0)) == pytest.approx(expected)
    assert float(variance.sel(layer=0, kv_head=1)) == 0.0  # the constant head


def test_post_rope_keys_at_different_sequence_positions_are_refused():
    keys = np.random.default_rng(0).normal(size=(3, 2, 4))
    shifted = np.array([[5, 6], [5, 6], [7, 8]])  # the third sample's prompt is two tokens longer
    ds = hand_built_store(keys, shifted)
    with pytest.raises(ValueError, match="2 of 2 matched image cells .* --keys-prerope"):
        key_variance(ds, "keys")
    np.testing.assert_allclose(key_variance(ds, "keys_prerope").values, key_variance(ds, "keys", allow_rotated=True).values)
    key_variance(hand_built_store(keys, np.array([[5, 6]] * 3)), "keys")  # same positions: accepted


def test_post_rope_keys_of_the_anyres_grid_are_refused_in_a_real_store(planted_variance_store):
    """Images of different sizes put the grid's cells at different sequence positions."""
    ds = store.reader.open(planted_variance_store)
    with pytest.raises(ValueError, match="--keys-prerope"):
        key_variance(ds, "keys", part=None)
    assert key_variance(ds, "keys_prerope", part=None).compute().attrs["part"] == "all"


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
        np.testing.assert_allclose(key_variance(ds, part=part, allow_rotated=True).values, expected, rtol=rtol)
    if fixture == "plain_store":  # the anyres grid cells sit at different sequence positions in different samples
        _, positions, _ = matched_positions(ds, None)
        assert not (positions == positions[0]).all()


def test_same_result_on_a_local_cluster(plain_store):
    from dask.distributed import Client, LocalCluster

    ds = store.reader.open(plain_store)
    threaded = key_variance(ds, part=None, allow_rotated=True).compute()
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster, \
            Client(cluster):
        distributed = key_variance(store.reader.open(plain_store), part=None, allow_rotated=True).compute()
    np.testing.assert_array_equal(threaded.values, distributed.values)


def test_thresholds_on_a_bimodal_sample():
    rng = np.random.RandomState(0)
    values = np.concatenate([rng.normal(200, 30, 40), rng.normal(600, 40, 72)])  # the paper's modes
    threshold = choose_threshold(values)
    assert threshold.bimodality.bimodal and threshold.method == "valley" and threshold.value == threshold.valley
    assert 300 < threshold.otsu < 500 and 300 < threshold.valley < 500
    assert choose_threshold(values, "otsu").value == threshold.otsu
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


def test_a_unimodal_distribution_flags_nothing_by_default():
    values = np.random.RandomState(0).normal(400, 100, 112)  # one mode, as many keys as LLaVA-OV-7B has
    threshold = choose_threshold(values)
    assert not threshold.bimodality.bimodal and threshold.value is None
    variance = xr.DataArray(values.reshape(28, 4), dims=("layer", "kv_head"),
                            coords={"layer": range(28), "kv_head": range(4)})
    keys = input_agnostic_keys(variance, threshold)
    assert keys["all"] == [] and keys["threshold"]["bimodality"]["bimodal"] is False
    forced = choose_threshold(values, "otsu")  # Otsu cuts a single mode in two all the same
    assert 0 < (values < forced.value).sum() < len(values)


def test_dip_statistic_of_a_hand_computed_case():
    """Two equal point masses (0, 0, 1, 1): the dip is the sup distance from the empirical CDF to the closest
    unimodal CDF. Within d < 1/4 a CDF would have to jump by >= 1/2 - 2d > 0 at both 0 and 1, i.e. hold two atoms,
    which a unimodal distribution cannot (an atom only at its mode); d = 1/4 is reached (1/4 spread below 0,
    density 1/2 on [0, 1), an atom of 1/4 at the mode 1). So the dip is 1/4, the largest any sample can have."""
    assert bimodality(np.array([0.0, 0.0, 1.0, 1.0])).dip == pytest.approx(0.25)
