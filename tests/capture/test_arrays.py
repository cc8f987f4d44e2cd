"""`--arrays` and `--streams`: a capture keeps only what the study needs, bit-identical to the same arrays of a full
capture, recorded in its config, validated, sized exactly and refused on a resume with another selection."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import zarr

import store.reader
from capture.errors import CaptureError
from capture.options import CaptureOptions, check_options
from capture.run import run_capture
from capture.selection import parse_arrays, parse_streams
from capture.sizing import capture_size, main
from store import schema
from store.info import describe
from store.schema import CaptureConfig, differing_fields
from store.validate import validate

ACTIVATIONS = {"hidden", "keys", "values", "ffn_topk_index", "ffn_topk_value"}


def test_keys_only_holds_the_full_captures_keys_and_nothing_else(selection_stores):
    full, keys = store.reader.open(selection_stores["full"]), store.reader.open(selection_stores["keys"])
    assert ACTIVATIONS & set(keys.data_vars) == {"keys"}
    assert ACTIVATIONS <= set(full.data_vars)
    assert keys["keys"].dtype == np.float32 and keys.sizes["stream"] == 0
    np.testing.assert_array_equal(keys["keys"].values, full["keys"].values)  # bit for bit, padding included
    np.testing.assert_array_equal(keys.n_tokens.values, full.n_tokens.values)
    config = CaptureConfig.of(keys.attrs)
    assert config.arrays == ("keys",) and config.streams == () and config.ffn_topk == 0
    assert CaptureConfig.of(full.attrs).arrays == ("hidden", "keys", "values", "ffn")
    assert validate(selection_stores["keys"]) == []
    assert "captured:  --arrays keys" in describe(selection_stores["keys"])
    lens = zarr.open_group(selection_stores["keys"], mode="r")["lens"]
    assert "down_proj_weight" not in lens.array_keys()  # no FFN arrays, no FFN weights


def test_a_streams_subset_is_the_slice_of_the_full_capture(selection_stores):
    full, subset = store.reader.open(selection_stores["full"]), store.reader.open(selection_stores["streams"])
    assert list(subset.stream.values) == [0, 2] and list(full.stream.values) == [0, 1, 2]
    assert ACTIVATIONS & set(subset.data_vars) == {"hidden"}
    np.testing.assert_array_equal(subset.hidden.values, full.hidden.sel(stream=[0, 2]).values)
    assert validate(selection_stores["streams"]) == []


def test_sizing_counts_the_selections_bytes_exactly(selection_stores, synthetic_root, capsys):
    on_disk = {}
    for name, selection in {"keys": {"arrays": "keys"}, "full": {}}.items():
        options = CaptureOptions(model="tiny-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, limit=2,
                                 dtype="fp32", batch_size=1, **selection)
        plan, tokens, sizes, lens = capture_size(options)
        assert tokens == list(store.reader.open(selection_stores[name]).n_tokens.values)
        on_disk[name] = {array: sum(f.stat().st_size for f in (selection_stores[name] / array / "c").rglob("*")
                                    if f.is_file()) for array in sizes}
        assert sizes == on_disk[name]  # uncompressed shards: exact, shard indices included
        stored_lens = store.reader.open_lens(selection_stores[name])
        for array, size in lens.items():  # weights: their shape times 4 bytes (fp32), zstd on disk below that
            assert size == stored_lens[array].size * 4
            assert size >= sum(f.stat().st_size for f in (selection_stores[name] / "lens" / array).rglob("*")
                               if f.is_file() and f.name != "zarr.json")
        assert set(lens) == ({schema.LENS_NORM_WEIGHT, schema.LENS_UNEMBEDDING}
                             | ({schema.LENS_DOWN_PROJ} if name == "full" else set()))
    assert set(on_disk["keys"]) == {"keys"} and set(on_disk["full"]) == ACTIVATIONS
    assert main(["--model", "tiny-llava-ov", "--dataset", "synthetic-coco", "--data-root", str(synthetic_root),
                 "--limit", "2", "--dtype", "fp32", "--batch-size", "1", "--arrays", "keys"]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert "--arrays keys," in header
    assert [row.split()[0] for row in rows] == ["keys", "lens/final_norm_weight", "lens/unembedding", "activations",
                                                "store"]
    assert f"{on_disk['keys']['keys']:,d} bytes" in rows[3]


def test_table_counts_only_the_selection(capsys):
    assert main(["--models", "tiny-llava-ov", "--arrays", "keys,values", "--streams", "0"]) == 0
    row = capsys.readouterr().out.splitlines()[-1].split("|")
    assert float(row[5]) == 0 and float(row[6]) > 0 and float(row[7]) == 0  # hidden, K+V, FFN top-k MB


def test_resume_with_another_selection_is_refused(selection_stores, synthetic_root):
    options = CaptureOptions(model="tiny-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, limit=2,
                             dtype="fp32", batch_size=1, out=selection_stores["keys"], progress=False)
    with pytest.raises(CaptureError, match=r"different configuration \(arrays, ffn_topk, streams differ\)"):
        run_capture(options)
    with pytest.raises(CaptureError, match=r"different configuration \(streams differ\)"):
        run_capture(CaptureOptions(**{**options.__dict__, "out": selection_stores["streams"], "arrays": "hidden"}))


def test_a_config_recorded_before_arrays_existed_means_every_array():
    old = CaptureConfig(model="m", revision="r", compute_dtype="float32", dataset="d", n_samples=1, layers=(0,),
                        streams=(0, 1), tokens=("all",)).to_attrs()
    del old["arrays"]
    assert CaptureConfig.from_attrs(old).arrays == ("hidden", "keys", "values", "ffn")
    wanted = CaptureConfig.from_attrs(old).to_attrs()
    assert differing_fields(old, wanted) == []  # an old store resumes
    assert differing_fields(old, {**wanted, "arrays": ["keys"]}) == ["arrays"]


def test_selection_options_are_checked():
    assert parse_arrays("values, keys") == ("keys", "values")
    assert parse_streams("0,-1", (0,), 4) == (0, 4) and parse_streams(None, (0, 3), 4) == (0, 3, 4)
    for spec in ("", "keys,attention"):
        with pytest.raises(CaptureError, match="--arrays"):
            parse_arrays(spec)
    with pytest.raises(CaptureError, match="out of range"):
        parse_streams("5", (0,), 4)
    with pytest.raises(CaptureError, match="keeps no hidden states"):
        check_options(CaptureOptions(arrays="keys", streams="0"))
    with pytest.raises(CaptureError, match="add ffn to --arrays"):
        check_options(CaptureOptions(arrays="keys", ffn_dense_tokens="image"))


def test_validate_holds_the_store_to_its_recorded_selection(selection_stores, tmp_path):
    copy = tmp_path / "keys.zarr"
    shutil.copytree(selection_stores["keys"], copy)
    root = zarr.open_group(copy, mode="r+")
    config = dict(root.attrs["capture_config"])
    root.attrs["capture_config"] = {**config, "arrays": ["hidden", "keys"]}
    assert validate(copy) == ["missing array 'hidden'"]
    root.attrs["capture_config"] = {**config, "arrays": ["values"]}
    assert validate(copy) == ["missing array 'values'", "array 'keys' is stored but not in capture_config arrays "
                                                        "['values']"]
