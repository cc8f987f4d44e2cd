"""Polling scores, controls, and the continuation loss against plain computations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from capture.datasets import load_image, open_dataset
from capture.prompts import build_prompt
from interventions import evaluate
from interventions.spec import InterventionSpec, parse_spec

REPO = Path(__file__).resolve().parents[2]


def test_polling_scores_on_known_answers():
    rows = [{"condition": "c", "present": p, "answer_yes": a} for p, a in
            [(True, True), (True, True), (True, False), (False, True), (False, False), (False, False)]]
    (score,) = evaluate.polling_scores(rows)
    assert score["precision"] == pytest.approx(200 / 3) and score["recall"] == pytest.approx(200 / 3)
    assert score["f1"] == pytest.approx(200 / 3) and score["accuracy"] == pytest.approx(400 / 6)
    assert score["yes_ratio"] == 50 and score["n"] == 6


def test_controls_block_as_many_other_units_in_the_same_layers():
    spec = parse_spec({"name": "s", "knockout": [{"queries": "text", "keys": "image",
                                                  "units": [[4, 0], [4, 3], [5, 1]]}]})
    controls = evaluate.control_conditions(spec, n_kv_heads=4, seed=1)
    dependent, random_units = controls["s control: input-dependent"], controls["s control: random"]
    for control in (dependent, random_units):
        assert len(control.knockout[0].units) == 3 and control.knockout[0].layers() <= {4, 5}
    assert not set(dependent.knockout[0].units) & set(spec.knockout[0].units)
    with pytest.raises(ValueError, match="only 1 other units"):
        evaluate.control_conditions(parse_spec({"knockout": [{"units": [[0, 0], [0, 1], [0, 2]]}]}), 4)


def test_polling_without_intervention_is_the_plain_model(tiny_model, synthetic_root):
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 2)
    rows = evaluate.poll(loaded, dataset, {"none": InterventionSpec()})
    questions = evaluate.polling_questions(dataset)
    assert len(rows) == len(questions) and {q[2] for q in questions} == {True, False}
    for index in {q[0] for q in questions}:  # no more absent objects than present ones per image
        assert sum(not q[2] for q in questions if q[0] == index) <= sum(q[2] for q in questions if q[0] == index)
    yes, no = evaluate.answer_token_ids(loaded)
    index, label, present = questions[-1]
    record = dataset.records[index]
    prompt = build_prompt(loaded.processor, "chat", evaluate.POLL_QUESTION.format(object=label), 1)
    inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(record.image_paths[0])])
    with torch.inference_mode():
        logits = loaded.model(**inputs, logits_to_keep=1).logits[0, -1]  # the same matmul shape: bit-exact
    assert rows[-1]["logit_yes"] == float(logits[yes]) and rows[-1]["logit_no"] == float(logits[no])
    assert rows[-1]["object"] == label and rows[-1]["present"] == present


def test_continuation_loss_is_the_cross_entropy_of_the_last_tokens(tiny_model, noise_image):
    loaded = tiny_model("tiny-llava-ov")
    prepared = evaluate.prepare(loaded, [noise_image(48, 48)], build_prompt(loaded.processor, "chat", "Hi", 1) + "a cat",
                                {})
    with torch.inference_mode():
        logits = loaded.model(**prepared.inputs).logits[0].float()
    ids = prepared.inputs["input_ids"][0]
    expected = torch.nn.functional.cross_entropy(logits[-4:-1], ids[-3:])
    assert evaluate.continuation_loss(loaded, prepared, 3, InterventionSpec()) == pytest.approx(float(expected), abs=1e-6)
    truncated = evaluate.continuation_loss(loaded, prepared, 3, InterventionSpec(keep_image_tokens=0))
    assert truncated != pytest.approx(float(expected))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=REPO, timeout=600)


def test_caption_loss_by_kept_tokens_from_the_cli(synthetic_root, tmp_path):
    result = run("-m", "interventions", "loss", "--dataset", "synthetic-coco", "--data-root", str(synthetic_root),
                 "--limit", "2", "--keep", "0,4,all", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "caption_loss.csv")
    assert len(table) == 3 and (table["count"] == 2).all() and table["kept_image_tokens"].iloc[0] == 0
