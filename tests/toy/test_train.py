"""The toy model's data, tokenizer and training loop, on runs of a few steps."""

from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import torch

from capture.datasets.synthetic_coco import CATEGORIES, COLOURS
from toy import model as toy_model
from toy.batches import IGNORE, encode, encode_described
from toy.scenes import Example, corpus, make_examples, patch_labels
from toy.train import TrainingRecipe, train, trainable_parameters

SHORT = replace(TrainingRecipe(), n_train_scenes=24, n_held_out_scenes=6, batch_size=4, tower_steps=3,
                tower_batch_size=4, language_steps=2, language_batch_size=4, align_steps=2, projector_steps=2, steps=2)


def test_examples_are_deterministic_and_balanced() -> None:
    first, second = make_examples(30, 1), make_examples(30, 1)
    assert [(e.task, e.question, e.answer) for e in first] == [(e.task, e.question, e.answer) for e in second]
    polls = [e for e in first if e.task == "poll"]
    assert sum(e.present for e in polls) == len(polls) // 2
    for e in polls:
        asked = e.question.split()[3]
        assert (asked in {o.category for o in e.objects}) == e.present
        assert e.answer == ("Yes" if e.present else "No")


def test_tokenizer_makes_label_words_single_tokens() -> None:
    tokenizer = toy_model.build_tokenizer(corpus(make_examples(60, 1)))
    for word in [*CATEGORIES, *COLOURS]:
        assert len(tokenizer.tokenize(f" {word}")) == 1, word
    assert [len(tokenizer.tokenize(w)) for w in ("Yes", "No")] == [1, 1]


def test_labels_are_exactly_the_answer_tokens() -> None:
    examples = make_examples(3, 1)  # caption, poll, bbox
    tokenizer = toy_model.build_tokenizer(corpus(make_examples(60, 1)))
    processor = toy_model.build_processor(tokenizer, toy_model.build_config(tokenizer))
    for example in examples:
        for encoded in (encode(processor, example), encode_described(processor, example)):
            answer = encoded.labels[encoded.labels != IGNORE]
            expected = example.answer + ("" if example.task == "bbox" else tokenizer.eos_token)
            assert tokenizer.decode(answer) == expected
            assert torch.equal(encoded.input_ids[-len(answer):], answer)


def test_projector_stage_trains_only_the_projector() -> None:
    tokenizer = toy_model.build_tokenizer(corpus(make_examples(60, 1)))
    from toy.train import new_model

    model = new_model(tokenizer, 0)
    trained = {id(p) for p in trainable_parameters(model, "projector")}
    names = {name for name, p in model.named_parameters() if id(p) in trained}
    assert names == {n for n, _ in model.named_parameters() if "multi_modal_projector" in n or n.endswith("image_newline")}
    assert len(trainable_parameters(model, "all")) == len(list(model.parameters()))


def test_training_is_deterministic() -> None:
    first, _, history = train(SHORT, log=lambda _: None)
    second, _, _ = train(SHORT, log=lambda _: None)
    assert [h["stage"] for h in history].count("all") >= 1
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_patch_labels_are_the_pixel_shares_of_each_shape_and_colour() -> None:
    from PIL import Image

    from capture.datasets.synthetic_coco import SceneObject

    square = SceneObject("square", "blue", [(0, 0), (63, 0), (63, 63), (0, 63)])  # pixels 0..63: a 4x4 block
    example = Example("bbox", Image.new("RGB", (256, 128)), (square,), "", "square")
    labels = patch_labels(example, tile_px=128, patch_px=16)  # the base view squashes 256 x 128 to 128 x 128
    assert labels.shape == (64, 2, 5)
    grid = labels.reshape(8, 8, 2, 5)
    assert np.all(grid[:4, :2, 0, 2] == 1.0) and np.all(grid[:4, :2, 1, 3] == 1.0)  # square, blue
    assert np.all(grid[4:, :, :, 0] == 1.0) and np.all(grid[:, 3:, :, 0] == 1.0)  # background
    assert np.allclose(labels.sum(axis=2), 1.0)


def test_a_pinned_build_is_copied_only_when_its_version_and_recipe_are_current(tmp_path, monkeypatch) -> None:
    from toy import train as toy_train

    monkeypatch.setattr(toy_model, "PINNED_DIR", tmp_path / "pinned")
    monkeypatch.setattr(toy_model, "toy_model_dir", lambda name: tmp_path / "cache" / name)
    trained = []
    monkeypatch.setattr(toy_train, "train_and_save", lambda out, recipe, name: trained.append(name) or out)
    pinned = tmp_path / "pinned" / "toy-x"
    pinned.mkdir(parents=True)
    (pinned / "model.safetensors").write_bytes(b"weights")
    stale = {"version": toy_model.TOY_VERSION, "recipe": asdict(replace(toy_train.TrainingRecipe(), steps=1))}
    (pinned / toy_model.BUILD_FILE).write_text(json.dumps(stale))
    toy_train.ensure_toy_model("toy-x")
    assert trained == ["toy-x"] and not (tmp_path / "cache" / "toy-x").exists()  # a stale pin is not used

    current = {"version": toy_model.TOY_VERSION, "recipe": asdict(toy_train.TrainingRecipe())}
    (pinned / toy_model.BUILD_FILE).write_text(json.dumps(current))
    out = toy_train.ensure_toy_model("toy-x")
    assert trained == ["toy-x"] and (out / "model.safetensors").read_bytes() == b"weights"
    assert toy_train.is_current(toy_model.read_build(out), toy_train.TrainingRecipe())
