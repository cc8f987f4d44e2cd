"""A store opens with plain xarray (no project code) and with tensorstore; values agree."""

from __future__ import annotations

import ml_dtypes
import numpy as np
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
