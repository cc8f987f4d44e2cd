"""The torch lens path (blocked over the vocabulary and the queries) against the numpy reference and the exact
products; the FFN value projection likewise; a stopped lens run resumed equals an uninterrupted one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import store.reader
from analyses.ffn_memory import value_top_tokens
from analyses.lens import Lens, top_tokens
from analyses.lens_run import LensRequest, parse_selection, projector, run_lens, token_rows
from analyses.topk import Projector, agreement, exact_products, rounding_bound, torch_device
from store.schema import TokenSet


@pytest.fixture(scope="module")
def lens_and_queries(captured_store):
    """The store's lens and the normalised hidden states of every stored token (rows, d_model) float32."""
    ds = store.reader.open(captured_store)
    lens = Lens.from_store(store.reader.open_lens(captured_store), "bfloat16")
    hidden = np.asarray(ds.hidden.values)
    stored = ds.kind.values != -1
    rows = hidden.transpose(1, 0, 2, 3)[:, stored].reshape(-1, hidden.shape[-1])  # (stream x stored tokens, d)
    return lens, rows, lens.normalise(rows)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_torch_path_equals_the_numpy_reference(lens_and_queries, dtype):
    lens, rows, queries = lens_and_queries
    exact = exact_products(queries, lens.unembedding, lens.bias)
    bound = rounding_bound(queries, lens.unembedding, lens.bias)
    ref_ids, ref_values = top_tokens(rows, lens, k=5)
    # 261-token vocabulary in blocks of 50 (the running top-k merges 6 blocks), queries in blocks of 700
    project = Projector(lens.unembedding, lens.bias, torch.device("cpu"), dtype, vocab_block=50, query_block=700)
    ids, values = project.top_k(queries, 5)
    for got in ((ids, values), (ref_ids, ref_values)):
        check = agreement(*got, exact, bound)
        assert check.ok and check.decided > 0.95 * check.n, check
    assert (ids == ref_ids).mean() > 0.99


def test_bfloat16_inputs_refuse_values_they_cannot_hold():
    with pytest.raises(ValueError, match="bfloat16 cannot represent"):
        Projector(np.full((3, 2), 1 + 2**-12, np.float32), None, torch.device("cpu"), "bfloat16")


def test_ffn_value_projection_equals_the_exact_products(captured_store):
    lens = Lens.from_store(store.reader.open_lens(captured_store), "bfloat16")
    down_proj = np.asarray(store.reader.open_lens(captured_store).down_proj_weight.values[1])  # (d_model, ffn_unit)
    units = np.arange(down_proj.shape[1])
    values = down_proj.astype(np.float32).T
    exact = exact_products(values, lens.unembedding, lens.bias)
    bound = rounding_bound(values, lens.unembedding, lens.bias)
    project = Projector(lens.unembedding, lens.bias, torch.device("cpu"), vocab_block=64)
    ids = value_top_tokens(lens, down_proj, units, 3, project)
    check = agreement(ids, np.take_along_axis(exact, ids, axis=1).astype(np.float32), exact, bound)
    assert check.ok and check.decided > 0.95 * check.n, check
    np.testing.assert_array_equal(value_top_tokens(lens, down_proj, units[:4], 3), ids[:4])


def test_a_stopped_run_resumes_to_the_uninterrupted_result(captured_store, tmp_path):
    ds = store.reader.open(captured_store)
    lens = Lens.from_store(store.reader.open_lens(captured_store), "bfloat16")
    request = LensRequest(samples=(0, 2, 3, 5), streams=(0, 2), token_set=TokenSet.IMAGE, k=3, block_samples=2)
    project = projector(lens, "cpu", threads=2)
    stopped = run_lens(ds, lens, tmp_path / "resumed.zarr", request, project, max_blocks=1)
    assert stopped.block_done.values.tolist() == [True, False]
    assert (stopped.token_id.values[:2] >= 0).any()
    resumed = run_lens(ds, lens, tmp_path / "resumed.zarr", request, project).load()
    whole = run_lens(ds, lens, tmp_path / "whole.zarr", request, project).load()
    xr.testing.assert_identical(resumed, whole)
    assert whole.block_done.values.all()
    rows = token_rows(ds, [5], TokenSet.IMAGE)[5]  # the last sample's rows equal the reference lens on its tokens
    hidden = np.asarray(ds.hidden.isel(sample=5, stream=[0, 2]).values[:, rows])
    ids, _ = top_tokens(hidden, lens, k=3)
    assert (whole.token_id.values[3, :, :len(rows)] == ids).mean() > 0.99
    np.testing.assert_array_equal(whole.store_token.values[3, :len(rows)], rows)
    assert (whole.token_id.values[3, :, len(rows):] == -1).all()
    with pytest.raises(ValueError, match="another request"):
        run_lens(ds, lens, tmp_path / "whole.zarr", LensRequest((0,), (0,)), project)


def test_selections_and_devices_fail_with_one_line():
    assert parse_selection("all", [0, 1, 2], "streams") == (0, 1, 2)
    assert parse_selection("2, 0-1", [0, 1, 2, 5], "streams") == (0, 1, 2)
    with pytest.raises(ValueError, match="--streams '0-9'"):
        parse_selection("0-9", [0, 1, 2], "streams")
    with pytest.raises(ValueError, match="--samples 'x'"):
        parse_selection("x", [0, 1], "samples")
    with pytest.raises(ValueError, match="--token-set"):
        LensRequest((0,), (0,), token_set="pixels")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="--device cuda: CUDA is not available"):
            torch_device("cuda")
