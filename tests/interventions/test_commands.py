"""Commands that need no model: Neo et al.'s scenario specs, and options refused before a model is loaded."""

from __future__ import annotations

import json

from interventions.__main__ import main
from interventions.spec import load_spec


def test_scenarios_writes_neos_three_blocking_scenarios(tmp_path):
    assert main(["scenarios", "--buffers", "0,2", "--out", str(tmp_path)]) == 0
    specs = {path.stem: load_spec(path) for path in tmp_path.glob("*.json")}
    blocked = {stem: (spec.knockout[0].keys, spec.knockout[0].queries) for stem, spec in specs.items()}
    assert blocked == {"block-object-to-last": ("object", "last"), "block-object2-to-last": ("object+2", "last"),
                       "block-non-object-to-last": ("non-object", "last"),
                       "block-non-last-row-to-last-row": ("non-last-row", "last-row")}
    assert json.loads((tmp_path / "block-object-to-last.json").read_text())["knockout"][0]["layers"] == "all"


def test_poll_options_are_checked_before_the_model_loads(tmp_path, capsys):
    assert main(["poll", "--negatives", "random,frequent", "--out", str(tmp_path)]) == 2
    assert "--negatives: choose from random, popular, adversarial" in capsys.readouterr().err
    assert main(["poll", "--control-draws", "0", "--out", str(tmp_path)]) == 2
    assert main(["poll", "--question", "Is it there?", "--out", str(tmp_path)]) == 2
