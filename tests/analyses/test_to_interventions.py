"""Analysis results drive interventions: the variance key list becomes a knockout spec, polled with controls (CLI)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd

from .conftest import PLANTED_HEADS

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_variance_to_knockout_to_polling_from_the_cli(planted_variance_store, synthetic_root, tmp_path):
    """Issue 8's loop on a model with planted input-agnostic keys: variance -> key list -> spec -> polling with
    controls, all from the command line."""
    model = planted_variance_store.parent / "model"
    analysis = run("-m", "analyses", "variance", "--store", str(planted_variance_store), "--out", str(tmp_path / "variance"))
    assert analysis.returncode == 0, analysis.stderr
    keys = tmp_path / "variance" / "input_agnostic_keys.json"
    made = run("-m", "interventions", "spec", "--keys", str(keys), "--out", str(tmp_path / "spec.json"), "--name", "flagged")
    assert made.returncode == 0, made.stderr
    spec = json.loads((tmp_path / "spec.json").read_text())
    assert sorted(map(tuple, spec["knockout"][0]["units"])) == sorted(PLANTED_HEADS)
    polled = run("-m", "interventions", "poll", "--model", str(model), "--dataset", "synthetic-coco", "--data-root",
                 str(synthetic_root), "--limit", "2", "--spec", str(tmp_path / "spec.json"), "--controls",
                 "--out", str(tmp_path / "poll"))
    assert polled.returncode == 0, polled.stderr
    scores = pd.read_csv(tmp_path / "poll" / "polling_scores.csv")
    assert list(scores.condition) == ["none", "flagged", "flagged control: input-dependent", "flagged control: random"]
    assert (scores.n == scores.n[0]).all() and scores.f1_change[0] == 0
    conditions = json.loads((tmp_path / "poll" / "polling_scores.json").read_text())["conditions"]
    dependent = {tuple(u) for u in conditions["flagged control: input-dependent"]["knockout"][0]["units"]}
    assert dependent == {(0, 0), (1, 1)}  # the other head of each planted layer
    assert (tmp_path / "poll" / "polling_f1.png").stat().st_size > 0
    bad = run("-m", "interventions", "poll", "--spec", str(tmp_path / "missing.json"), "--out", str(tmp_path / "x"))
    assert bad.returncode == 2 and "not found" in bad.stderr.strip().splitlines()[-1]
