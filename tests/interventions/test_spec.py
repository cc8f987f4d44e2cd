"""Spec files: parsing, key lists from the variance analysis, and one-line errors."""

from __future__ import annotations

import json

import pytest

from interventions.spec import SpecError, bind_layers, load_spec, parse_spec, units_from_key_list

KEY_LIST = {"all": [[0, 1], [3, 0], [3, 1]],
            "keys": {"early": [{"layer": 0, "kv_head": 1, "variance": 0.1}], "middle": [],
                     "late": [{"layer": 3, "kv_head": 0, "variance": 0.2}, {"layer": 3, "kv_head": 1, "variance": 0.3}]},
            "layer_groups": {"early": [0], "middle": [1], "late": [2, 3]}}


def test_units_from_a_key_list_relative_to_the_spec(tmp_path):
    (tmp_path / "keys.json").write_text(json.dumps(KEY_LIST))
    (tmp_path / "spec.json").write_text(json.dumps({
        "name": "late", "knockout": [{"queries": "text", "keys": "image", "units_from": {"file": "keys.json", "group": "late"}},
                                     {"queries": "last", "keys": "object+1", "layers": [1, 2], "kv_heads": [0]}],
        "ablate": [{"tokens": "object", "mean_from": "store.zarr"}], "keep_image_tokens": 8}))
    spec = load_spec(tmp_path / "spec.json")
    assert spec.knockout[0].units == ((3, 0), (3, 1)) and spec.knockout[0].layers() == {3}
    assert spec.knockout[0].control_layers == (2, 3)  # controls draw from the whole late group
    assert spec.knockout[1].units == ((1, 0), (2, 0)) and spec.knockout[1].keys == "object+1"
    assert spec.ablate[0].mean_from == tmp_path / "store.zarr" and spec.ablate[0].mean_over == "image"
    assert spec.keep_image_tokens == 8 and not spec.empty
    assert units_from_key_list(tmp_path / "keys.json") == [(0, 1), (3, 0), (3, 1)]
    assert parse_spec(spec.as_dict()).knockout == spec.knockout  # round trip
    whole_layers = parse_spec({"knockout": [{"layers": [2, 3]}]})
    assert parse_spec(whole_layers.as_dict()).knockout[0].units == ((2, None), (3, None))


@pytest.mark.parametrize(("data", "message"), [
    ({"knockout": [{"queries": "txt", "layers": [0]}]}, "unknown token set 'txt'"),
    ({"knockout": [{"queries": "text"}]}, "names no units"),
    ({"knockout": [], "colour": 1}, "unknown spec field"),
    ({"keep_image_tokens": -1}, "non-negative"),
    ({"ablate": [{"tokens": "object"}]}, "needs tokens and mean_from"),
    ({"object_region": "polygon"}, "object_region 'polygon'"),
    ({"knockout": [{"layers": "every"}]}, "list of layers or \"all\""),
    ({"seed": "zero"}, "seed and draw must be integers"),
])
def test_bad_specs_are_one_line_errors(data, message):
    with pytest.raises(SpecError, match=message):
        parse_spec(data)


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"name": "x",\n "knockout": [}')
    with pytest.raises(SpecError, match="not valid JSON \\(line 2"):
        load_spec(tmp_path / "bad.json")
    (tmp_path / "keys.json").write_text(json.dumps(KEY_LIST))
    with pytest.raises(SpecError, match="has no group 'late2'"):
        units_from_key_list(tmp_path / "keys.json", "late2")


def test_every_layer_is_bound_to_the_model():
    spec = parse_spec({"name": "s", "knockout": [{"queries": "last", "keys": "object+1", "layers": "all"},
                                                 {"queries": "last-row", "keys": "non-last-row", "layers": [2]}]})
    bound = bind_layers(spec, 3)
    assert bound.knockout[0].units == ((0, None), (1, None), (2, None)) and bound.knockout[1].units == ((2, None),)
    with pytest.raises(SpecError, match=r"layer\(s\) \[2\] outside the model's 2 layers"):
        bind_layers(spec, 2)


def test_what_a_spec_needs_and_records():
    register = parse_spec({"ablate": [{"tokens": "random:register", "mean_from": "s.zarr"}], "seed": 3,
                           "object_region": "box", "provenance": {"from": "test"}})
    assert register.needs_norms and register.randomised and register.seed == 3
    plain = parse_spec({"knockout": [{"queries": "text", "keys": "image:base", "layers": [0]}]})
    assert not plain.needs_norms and not plain.randomised and plain.object_region == "auto"
    assert parse_spec(register.as_dict()) == register  # the recorded form reads back the same


def test_a_mean_from_a_store_without_hidden_states_is_refused_in_one_line(selection_stores):
    from interventions.means import store_mean

    with pytest.raises(SpecError, match=r"^mean_from .*keys.zarr holds no 'hidden' array \(captured with --arrays "
                                        r"keys\): recapture with --arrays hidden,keys$"):
        store_mean(selection_stores["keys"], "image")
