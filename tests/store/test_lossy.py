"""Mantissa rounding: error within the recorded bound, NaN / inf kept, ties to even."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from store.lossy import max_relative_error, round_mantissa


@pytest.mark.parametrize("dtype, logical", [(ml_dtypes.bfloat16, "bfloat16"), (np.float16, "float16"),
                                            (np.float32, "float32")])
@pytest.mark.parametrize("keep", [0, 3, 5])
def test_error_bound(dtype, logical, keep):
    values = np.random.default_rng(0).normal(0, 10, 20_000).astype(dtype)
    storage = values.view(np.uint32 if logical == "float32" else np.uint16).copy()
    rounded = round_mantissa(storage, logical, keep).view(dtype).astype(np.float64)
    exact = values.astype(np.float64)
    normal = np.abs(exact) > ml_dtypes.finfo(dtype).tiny
    relative = np.abs(rounded - exact)[normal] / np.abs(exact)[normal]
    assert relative.max() <= max_relative_error(keep)
    assert relative.max() > max_relative_error(keep) / 4  # the bound is tight, not vacuous
    low = (storage >> 0) & ((1 << ({"bfloat16": 7, "float16": 10, "float32": 23}[logical] - keep)) - 1)
    assert not low.any()  # the dropped bits are zero


def test_specials_and_ties():
    values = np.array([np.nan, np.inf, -np.inf, 1.5, 1.25, 1.75, 0.0], ml_dtypes.bfloat16)
    rounded = round_mantissa(values.view(np.uint16).copy(), "bfloat16", 1).view(ml_dtypes.bfloat16).astype(float)
    assert np.isnan(rounded[0]) and rounded[1] == np.inf and rounded[2] == -np.inf
    assert list(rounded[3:]) == [1.5, 1.0, 2.0, 0.0]  # 1.25 and 1.75 are ties: to even
    largest = np.array([ml_dtypes.finfo(ml_dtypes.bfloat16).max], ml_dtypes.bfloat16)
    assert np.isfinite(round_mantissa(largest.view(np.uint16).copy(), "bfloat16", 0).view(ml_dtypes.bfloat16)).all()
    with pytest.raises(ValueError, match="keep_bits"):
        round_mantissa(values.view(np.uint16).copy(), "bfloat16", 8)


def test_capture_with_rounded_mantissas(synthetic_root, tmp_path):
    """A lossy capture stays within the bound recorded in its attributes, and takes less space with zstd."""
    import store.reader
    from capture.errors import CaptureError
    from capture.options import CaptureOptions
    from capture.run import run_capture
    from store.info import bytes_on_disk

    exact, lossy = tmp_path / "exact.zarr", tmp_path / "lossy.zarr"
    common = {"data_root": synthetic_root, "limit": 3, "progress": False, "compression": "zstd"}
    run_capture(CaptureOptions(out=exact, **common))
    summary = run_capture(CaptureOptions(out=lossy, keep_mantissa_bits=3, **common))
    a, b = store.reader.open(exact), store.reader.open(lossy)
    bound = b.attrs["capture_config"]["max_relative_error"]
    assert bound == 2.0 ** -4 and b.attrs["capture_config"]["keep_mantissa_bits"] == 3
    for name in ("hidden", "keys", "values", "ffn_topk_value"):
        x, y = np.asarray(a[name].values, np.float64), np.asarray(b[name].values, np.float64)
        normal = np.abs(x) > ml_dtypes.finfo(ml_dtypes.bfloat16).tiny
        assert (np.abs(y - x)[normal] / np.abs(x)[normal]).max() <= bound
        assert not np.array_equal(x, y)
    assert np.array_equal(a.ffn_topk_index.values, b.ffn_topk_index.values)
    assert summary.bytes_on_disk < 0.8 * bytes_on_disk(exact)
    with pytest.raises(CaptureError, match="only saves space with a codec"):
        run_capture(CaptureOptions(out=tmp_path / "x.zarr", data_root=synthetic_root, keep_mantissa_bits=3))
    with pytest.raises(CaptureError, match="must be 0..7"):
        run_capture(CaptureOptions(out=tmp_path / "y.zarr", data_root=synthetic_root, keep_mantissa_bits=9,
                                   compression="zstd"))
