"""Neo et al.'s layer windows, Liu et al.'s controls drawn from the layer group, seeded redraws."""

from __future__ import annotations

import pytest

from interventions import variants
from interventions.spec import parse_spec


def test_neo_windows_are_the_papers_for_32_layers_and_scale():
    assert variants.neo_windows(32) == [(1, 10), (5, 14), (11, 20), (15, 24), (21, 31)]
    # 28 layers (LLaVA-OV-7B): each bound x 28/32 rounded half up: 1*0.875=0.875 -> 1, 10*0.875=8.75 -> 9, ...
    assert variants.neo_windows(28) == [(1, 9), (4, 12), (10, 18), (13, 21), (18, 27)]
    assert variants.neo_windows(2) == [(0, 1), (1, 1)]  # repeats dropped
    assert variants.windows("sliding", 12) == [(0, 9), (1, 10), (2, 11)]
    assert variants.windows("sliding:3", 4) == [(0, 2), (1, 3)] and variants.windows("sliding", 4) == [(0, 3)]
    with pytest.raises(ValueError, match="neo, sliding or sliding:SIZE"):
        variants.windows("every", 4)


def test_window_conditions_keep_only_the_windows_the_spec_blocks_in():
    spec = parse_spec({"name": "late", "knockout": [{"units": [[20, 0], [26, 1]]}]})
    conditions = variants.layer_window_conditions(spec, variants.neo_windows(28))
    assert list(conditions) == ["late layers 13-21", "late layers 18-27"]  # none of 20, 26 below layer 13
    assert conditions["late layers 18-27"].knockout[0].units == ((20, 0), (26, 1))
    assert conditions["late layers 13-21"].knockout[0].units == ((20, 0),)


def test_controls_draw_from_the_whole_layer_group_many_times():
    spec = parse_spec({"name": "s", "knockout": [{"queries": "text", "keys": "image:base",
                                                  "units": [[6, 0], [6, 1], [7, 1]], "control_layers": [4, 5, 6, 7]}]})
    controls = variants.control_conditions(spec, n_kv_heads=2, draws=10, seed=1)
    assert len(controls) == 20
    flagged = set(spec.knockout[0].units)
    drawn = {kind: [c.knockout[0].units for c in controls.values() if c.group_of == f"s control: {kind}"]
             for kind in variants.CONTROL_KINDS}
    for unit_sets in drawn.values():
        assert len(unit_sets) == 10 and all(len(units) == 3 for units in unit_sets)
        assert {layer for units in unit_sets for layer, _ in units} <= {4, 5, 6, 7}
        assert len(set(unit_sets)) > 1  # the draws differ
    assert not any(set(units) & flagged for units in drawn["input-dependent"])
    assert {layer for units in drawn["input-dependent"] for layer, _ in units} & {4, 5}  # beyond the flagged layers
    assert all(c.control_of == "s" and c.knockout[0].keys == "image:base" for c in controls.values())
    assert variants.control_conditions(spec, 2, 10, seed=1) == controls  # seeded
    with pytest.raises(ValueError, match="only 1 input-dependent units"):
        variants.control_conditions(parse_spec({"knockout": [{"units": [[0, 0], [0, 1], [0, 2]]}]}), 4, 1)


def test_redraws_of_a_randomised_spec():
    spec = parse_spec({"name": "r", "ablate": [{"tokens": "random:object", "mean_from": "s.zarr"}]})
    drawn = variants.redraws(spec, 3)
    assert list(drawn) == ["r #0", "r #1", "r #2"]
    assert [s.draw for s in drawn.values()] == [0, 1, 2] and {s.group_of for s in drawn.values()} == {"r"}
