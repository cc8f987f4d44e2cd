"""A store opens with plain xarray (no project code) and with tensorstore; values agree."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
import tensorstore
import xarray as xr

import store.reader
from store import schema


def test_plain_xarray_and_tensorstore_agree_with_reader(captured_store):
    plain = xr.open_zarr(captured_store, consolidated=False)
    ours = store.reader.open(captured_store)
    assert set(plain.data_vars) == set(ours.data_vars)
    assert plain["keys"].attrs[schema.ATTR_LOGICAL_DTYPE] == "bfloat16"
    assert plain["keys"].dtype == np.uint16 and ours["keys"].dtype == ml_dtypes.bfloat16
    for name in (schema.HIDDEN, schema.KEYS, schema.VALUES, schema.KEYS_PREROPE, schema.FFN_DENSE,
                 schema.FFN_TOPK_VALUE):
        bits = plain[name].values
        assert np.array_equal(ours[name].values.view(np.uint16), bits), name
        on_disk = tensorstore.open(
            {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(captured_store / name)}}
        ).result().read().result()
        assert np.array_equal(on_disk, bits), name
    assert np.array_equal(plain.ffn_topk_index.values, ours.ffn_topk_index.values)
    assert list(plain.layer.values) == [0, 1] and list(plain.stream.values) == [0, 1, 2]
    captured = ours.status.values == schema.SampleStatus.CAPTURED
    assert captured.all()
    # Everything past n_tokens is padding: zero bits, PAD kind.
    for index, n in enumerate(ours.n_tokens.values):
        assert (ours.kind.values[index, n:] == schema.TokenKind.PAD).all()
        assert not ours["values"].values[index, :, :, n:].view(np.uint16).any()


def test_lens_group(captured_store):
    lens = store.reader.open_lens(captured_store)
    assert lens.unembedding.dtype == ml_dtypes.bfloat16
    assert lens.unembedding.shape == (lens.sizes["vocab"], 64)
    assert lens.down_proj_weight.shape == (2, 64, 176)
    assert lens.attrs[schema.ATTR_NORM_EPS] > 0
    assert str(lens.vocabulary.values[ord("a")]) == "a"


def test_dense_ffn_only_for_selected_tokens(captured_store):
    ds = store.reader.open(captured_store)
    selected = ds.ffn_dense_selected.values
    kind = ds.kind.values
    is_image = np.isin(kind, (schema.TokenKind.IMAGE, schema.TokenKind.IMAGE_NEWLINE))
    last = np.zeros_like(selected)
    last[np.arange(len(kind)), ds.n_tokens.values - 1] = True
    assert np.array_equal(selected, is_image | last)
    dense = ds.ffn_dense.values.view(np.uint16)
    assert not dense.transpose(0, 2, 1, 3)[~selected].any()
    assert dense.transpose(0, 2, 1, 3)[selected].any(axis=-1).all()


def test_shard_chunks_read_through_tensorstore_equal_inner_chunks_read_by_zarr(captured_store):
    """The default reader (tensorstore, one dask chunk per shard) and zarr-python's inner chunks give the same
    dataset, strings included; a selection inside one shard reads the same values."""
    shards = store.reader.open(captured_store)
    inner = store.reader.open(captured_store, chunks="inner")
    shard = xr.open_zarr(captured_store, consolidated=False)["keys"].encoding["shards"]
    chunk = shards["keys"].data.chunksize  # whole shards: several along samples, one everywhere else
    assert chunk[1:] == shard[1:] and chunk[0] % shard[0] == 0 and chunk[0] > shard[0]
    assert inner["keys"].data.chunksize == inner["keys"].encoding["chunks"]
    assert set(shards.data_vars) == set(inner.data_vars)
    for name in shards.data_vars:
        left, right = shards[name].compute(), inner[name].compute()
        assert left.dtype == right.dtype and left.attrs == right.attrs, name
        if left.dtype == ml_dtypes.bfloat16:  # compared as bits (xarray's NaN-aware equality knows no bfloat16)
            left, right = left.copy(data=left.values.view(np.uint16)), right.copy(data=right.values.view(np.uint16))
        xr.testing.assert_identical(left, right)
    picked = {"sample": 1, "layer": 1, "kv_head": 0}
    assert np.array_equal(shards["keys"].isel(picked).values.view(np.uint16),
                          inner["keys"].isel(picked).values.view(np.uint16))
    with pytest.raises(ValueError, match="unknown chunks 'big'"):
        store.reader.open(captured_store, chunks="big")
