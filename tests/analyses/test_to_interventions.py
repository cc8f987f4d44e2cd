"""Analysis results drive interventions: the variance key list becomes a knockout spec, polled with controls (CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import PLANTED_HEADS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_variance_to_knockout_to_polling_from_the_cli(planted_variance_store, synthetic_root, tmp_path):
    """Issue 8's loop on a model with planted input-agnostic keys: variance -> key list -> spec -> polling with
    controls, all from the command line; the knockout blocks the measured tokens and its effect is scored."""
    model = planted_variance_store.parent / "model"
    analysis = run("-m", "analyses", "variance", "--store", str(planted_variance_store), "--out", str(tmp_path / "variance"))
    assert analysis.returncode == 0, analysis.stderr
    keys = tmp_path / "variance" / "input_agnostic_keys.json"
    made = run("-m", "interventions", "spec", "--keys", str(keys), "--out", str(tmp_path / "spec.json"), "--name", "flagged")
    assert made.returncode == 0, made.stderr
    spec = json.loads((tmp_path / "spec.json").read_text())
    knockout = spec["knockout"][0]
    assert sorted(map(tuple, knockout["units"])) == sorted(PLANTED_HEADS)
    assert knockout["keys"] == "image:base" and spec["provenance"]["blocks"] == "the measured tokens"
    assert knockout["control_layers"] == [0, 1]  # the whole layer groups, not only the flagged keys' layers
    polled = run("-m", "interventions", "poll", "--model", str(model), "--dataset", "synthetic-coco", "--data-root",
                 str(synthetic_root), "--limit", "2", "--spec", str(tmp_path / "spec.json"), "--controls",
                 "--control-draws", "3", "--negatives", "random,adversarial", "--out", str(tmp_path / "poll"))
    assert polled.returncode == 0, polled.stderr
    scores = pd.read_csv(tmp_path / "poll" / "polling_scores.csv")
    reported = ["none", "flagged", "flagged control: input-dependent", "flagged control: random"]
    assert list(scores.condition) == reported * 2 and list(scores.negatives) == ["random"] * 4 + ["adversarial"] * 4
    assert (scores.draws == [1, 1, 3, 3] * 2).all()
    conditions = json.loads((tmp_path / "poll" / "polling_scores.json").read_text())["conditions"]
    dependent = {tuple(u) for u in conditions["flagged control: input-dependent #0"]["knockout"][0]["units"]}
    assert dependent == {(0, 0), (1, 1)}  # the other head of each planted layer
    answers = pd.read_csv(tmp_path / "poll" / "polling_answers.csv")
    none, flagged = (answers[answers.condition == name].reset_index() for name in ("none", "flagged"))
    assert (flagged.tokens_touched == 16).all()  # the 4 x 4 base view measured, no grid or newline token
    assert ((flagged.logit_yes - none.logit_yes).abs() > 0).all()  # the knockout acts on every question
    asked = flagged[flagged.present | flagged.settings.str.contains("random")]
    tp = int((asked.present & asked.answer_yes).sum())
    fp, fn = int((~asked.present & asked.answer_yes).sum()), int((asked.present & ~asked.answer_yes).sum())
    row = scores[(scores.condition == "flagged") & (scores.negatives == "random")].iloc[0]
    assert row.f1 == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn)) and row.n_images == 2
    assert row.f1_low <= row.f1 <= row.f1_high
    comparisons = pd.read_csv(tmp_path / "poll" / "polling_comparisons.csv")
    assert set(comparisons.control) == {"flagged control: input-dependent", "flagged control: random"}
    assert (tmp_path / "poll" / "polling_f1.png").stat().st_size > 0
    bad = run("-m", "interventions", "poll", "--spec", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "not found" in bad.stderr.strip().splitlines()[-1]
