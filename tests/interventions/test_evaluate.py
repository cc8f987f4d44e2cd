"""Polling, VQA, descriptions and the continuation loss against plain computations."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from capture.datasets import load_image, open_dataset
from capture.prompts import build_prompt
from capture.samples import prepare_sample
from interventions import evaluate, polling, scores
from interventions.spec import InterventionSpec, parse_spec
from store.schema import TokenKind

REPO = Path(__file__).resolve().parents[2]


def test_polling_without_intervention_is_the_plain_model(tiny_model, synthetic_root):
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 2)
    rows = polling.poll(loaded, dataset, {"none": InterventionSpec()})
    questions = polling.polling_questions(dataset)
    assert len(rows) == len(questions) and {q.present for q in questions} == {True, False}
    yes, no = evaluate.answer_token_ids(loaded)
    last = questions[-1]
    record = dataset.records[last.index]
    prompt = build_prompt(loaded.processor, "chat", polling.POLL_QUESTION.format(object=last.label), 1)
    inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(record.image_paths[0])])
    with torch.inference_mode():
        logits = loaded.model(**inputs, logits_to_keep=1).logits[0, -1]  # the same matmul shape: bit-exact
    assert rows[-1]["logit_yes"] == float(logits[yes]) and rows[-1]["logit_no"] == float(logits[no])
    assert rows[-1]["p_yes"] == pytest.approx(float(torch.softmax(logits.double(), -1)[yes]), rel=1e-12)
    assert rows[-1]["object"] == last.label and rows[-1]["present"] == last.present


def test_continuation_loss_is_the_cross_entropy_of_the_last_tokens(tiny_model, noise_image):
    loaded = tiny_model("tiny-llava-ov")
    prepared = prepare_sample(loaded, build_prompt(loaded.processor, "chat", "Hi", 1) + "a cat", [noise_image(48, 48)],
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
    spec = tmp_path / "interval.json"  # Wei's masking interval: no query sees image tokens 0-3, at any layer
    spec.write_text(json.dumps({"name": "mask 0-3", "knockout": [{"queries": "all", "keys": "image[0:4]", "layers": "all"}]}))
    result = run("-m", "interventions", "loss", "--dataset", "synthetic-coco", "--data-root", str(synthetic_root),
                 "--limit", "2", "--keep", "0,4,all", "--spec", str(spec), "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(tmp_path / "caption_loss.csv")
    assert len(table) == 6 and (table["n"] == 2).all() and table["kept_image_tokens"].iloc[0] == 0
    assert list(table["condition"]) == ["none"] * 3 + ["mask 0-3"] * 3
    by_sample = pd.read_csv(tmp_path / "caption_loss_by_sample.csv")
    for (condition, keep), mine in by_sample.groupby(["condition", "keep"], sort=False):  # the mean of two images
        found = table[(table["condition"] == condition) & (table["keep"].astype(str) == str(keep))].iloc[0]
        assert found["loss"] == pytest.approx(mine["loss"].mean())
        assert found["loss_low"] <= found["loss"] <= found["loss_high"]
        if condition == "none":
            assert pd.isna(found["loss_change"])
            continue
        none = by_sample[(by_sample["condition"] == "none") & (by_sample["keep"] == keep)]
        change = mine["loss"].to_numpy() - none["loss"].to_numpy()  # paired by image, in record order
        assert found["loss_change"] == pytest.approx(change.mean()) and found["loss_change_n"] == 2
        assert found["loss_change_low"] <= found["loss_change"] <= found["loss_change_high"]
    masked = by_sample[by_sample["condition"] == "mask 0-3"]
    assert list(masked["tokens_touched"]) == [0, 4, 4] * 2  # nothing to mask when no image token is kept
    assert json.loads((tmp_path / "caption_loss.json").read_text())["conditions"]["mask 0-3"]["knockout"]


def test_caption_loss_under_a_spec_beside_the_unintervened_model(tiny_model, synthetic_root):
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 1)
    n_layers = loaded.adapter.text_config(loaded.config).num_hidden_layers
    blind = parse_spec({"name": "blind", "knockout": [{"queries": "text", "keys": "image", "layers": list(range(n_layers))}]})
    plain = evaluate.caption_losses(loaded, dataset, [0, None])
    rows = evaluate.caption_losses(loaded, dataset, [0, None], conditions={"none": InterventionSpec(), "blind": blind})
    assert [r["loss"] for r in rows if r["condition"] == "none"] == [r["loss"] for r in plain]  # bit for bit
    none_0, none_all, blind_0, blind_all = (r["loss"] for r in rows)
    assert blind_0 == none_0  # no image token kept: nothing to block
    # Text blind to the image at every layer: the caption's loss is that of any other image of the same size
    record = dataset.records[0]
    prefix = build_prompt(loaded.processor, "chat", evaluate.DESCRIBE, 1)
    caption = record.annotation["captions"][0]
    tokenizer = loaded.processor.tokenizer
    n_caption = len(tokenizer(prefix + caption)["input_ids"]) - len(tokenizer(prefix)["input_ids"])
    turned = prepare_sample(loaded, prefix + caption, [load_image(record.image_paths[0]).rotate(180)], record.annotation)
    assert blind_all == evaluate.continuation_loss(loaded, turned, n_caption, blind)
    assert none_all != evaluate.continuation_loss(loaded, turned, n_caption, InterventionSpec())
    assert blind_all != none_all
    with pytest.raises(ValueError, match="keep_image_tokens"):
        evaluate.caption_losses(loaded, dataset, [None], conditions={"cut": InterventionSpec(keep_image_tokens=2)})


def test_generation_without_intervention_is_greedy_decoding(tiny_model, synthetic_root):
    loaded = tiny_model("tiny-llava-ov")
    record = open_dataset("synthetic-coco", synthetic_root, None, 1).records[0]
    prepared = prepare_sample(loaded, build_prompt(loaded.processor, "chat", evaluate.DESCRIBE, 1),
                              [load_image(record.image_paths[0])], record.annotation)
    ours = evaluate.generate(loaded, prepared, InterventionSpec(), max_new_tokens=5)
    with torch.inference_mode():
        reference = loaded.model.generate(**prepared.inputs, max_new_tokens=5, do_sample=False)
    assert ours == reference[0, prepared.inputs["input_ids"].shape[1]:].tolist()[: len(ours)] and len(ours) >= 1
    # knocking the image out at every layer makes the description the same for every image
    spec = parse_spec({"knockout": [{"queries": "text", "keys": "image", "layers": [0, 1]}]})
    texts = {tuple(evaluate.generate(loaded, prepare_sample(loaded, build_prompt(loaded.processor, "chat", evaluate.DESCRIBE, 1),
             [load_image(r.image_paths[0])], r.annotation), spec, 4))
             for r in open_dataset("synthetic-coco", synthetic_root, None, 12).records
             if load_image(r.image_paths[0]).size == load_image(record.image_paths[0]).size}
    assert len(texts) == 1


def test_describe_counts_named_objects(tiny_model, synthetic_root, monkeypatch):
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 2)
    present = sorted({o["label"] for o in dataset.records[0].annotation["objects"]})
    absent = sorted({o["label"] for r in dataset.records for o in r.annotation["objects"]} - set(present))
    said = f"A {present[0]} and two {absent[0]}s." if absent else f"A {present[0]}."
    monkeypatch.setattr(evaluate, "generate", lambda *a, **k: loaded.processor.tokenizer.encode(said, add_special_tokens=False))
    rows = evaluate.describe(loaded, dataset, {"none": InterventionSpec()})
    assert rows[0]["objects_named"] == 1 and rows[0]["absent_named"] == (1 if absent else 0)
    assert rows[0]["named"] == present[0]
    said_labels = {present[0], *absent[:1]}  # every description names these two labels
    labels = [{o["label"] for o in r.annotation["objects"]} for r in dataset.records]
    (score,) = scores.rate_scores(rows, {"named": ("objects_named", "objects")})
    assert score["named"] == pytest.approx(100 * sum(len(said_labels & mine) for mine in labels)
                                           / sum(len(mine) for mine in labels))


def test_vqa_with_an_answer_prefix(tiny_model, noise_image, tmp_path):
    """The choice, its correctness and p(correct) against plain forward passes and the manifest's answers."""
    import json

    answers = ["red", "blue", "red"]
    for i in range(3):
        noise_image(40 + i, 40).save(tmp_path / f"{i}.png")
    lines = [{"image": f"{i}.png", "text": "What colour is it?", "answer": a} for i, a in enumerate(answers)]
    (tmp_path / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    loaded = tiny_model("tiny-llava-ov")
    rows = evaluate.vqa(loaded, open_dataset("manifest", tmp_path, None, None), {"none": InterventionSpec()},
                        answer_prefix="It is")
    shared, ids = evaluate.answer_tokens(loaded, (" blue", " red"))  # the data set's answers, sorted
    prompt = build_prompt(loaded.processor, "chat", "What colour is it?", 1) + "It is"
    with_space = prepare_sample(loaded, prompt + " ", [load_image(tmp_path / "0.png")], {})
    assert shared == with_space.inputs["input_ids"][0, -len(shared):].tolist()  # the space, as tokenised in context
    for i, found in enumerate(rows):
        inputs = loaded.adapter.processor_inputs(loaded.processor, prompt + " ", [load_image(tmp_path / f"{i}.png")])
        with torch.inference_mode():
            logits = loaded.model(**inputs, logits_to_keep=1).logits[0, -1].double()
        chosen = ["blue", "red"][int(torch.argmax(logits[ids]))]
        assert found["chosen"] == chosen and found["correct"] == (chosen == answers[i])
        expected = float(torch.softmax(logits, -1)[ids[["blue", "red"].index(answers[i])]])
        assert found["p_correct"] == pytest.approx(expected, rel=1e-5)


def test_register_tokens_in_an_ablation_spec(tiny_model, synthetic_root):
    """The input-embedding norms are those of the decoder's input (hidden state 0), and a `register` ablation
    replaces exactly the image tokens whose norm exceeds the sample's mean + 2 std."""
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 1)
    record = dataset.records[0]
    prepared = prepare_sample(loaded, build_prompt(loaded.processor, "chat", "Hi", 1),
                              [load_image(record.image_paths[0])], record.annotation)
    norms = evaluate.input_norms(loaded, prepared)
    with torch.inference_mode():
        hidden = loaded.model(**prepared.inputs, output_hidden_states=True).hidden_states[0][0].double()
    np.testing.assert_allclose(norms, hidden.norm(dim=-1).numpy(), rtol=1e-6)
    image = prepared.table.fields["kind"] == TokenKind.IMAGE
    threshold = norms[image].mean() + 2 * norms[image].std()
    expected = int((norms[image] > threshold).sum())
    width = loaded.adapter.text_config(loaded.config).hidden_size
    spec = parse_spec({"name": "registers", "ablate": [{"tokens": "register", "mean_from": "s.zarr"}]})
    means = {("s.zarr", "image"): torch.zeros(width)}
    question = polling.Question(0, record.annotation["objects"][0]["label"], True, ("random",))
    rows = polling.poll(loaded, dataset, {"none": InterventionSpec(), "registers": spec}, means, questions=[question])
    assert rows[1]["tokens_touched"] == expected > 0
