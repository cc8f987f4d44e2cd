"""Neo et al.'s image selection (object area, one instance, fewer than 4 objects) and hallucination control."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from capture.datasets import Dataset, Record, load_image, open_dataset
from capture.prompts import POLL_QUESTION, build_prompt
from interventions import regions, selection
from interventions.evaluate import answer_token_ids


def box(label: str, x1: float, y1: float, x2: float, y2: float, number: int = 0) -> dict:
    return {"id": number, "label": label, "box": [x1, y1, x2, y2]}


def test_neo_targets(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "image.png")
    ids = np.zeros((100, 100), np.uint8)
    ids[0:30, 0:50] = 1  # the mask of object 1: 1,500 px, though its box says 60 x 60 = 3,600 px²
    Image.fromarray(ids, mode="L").save(tmp_path / "mask.png")
    path = (tmp_path / "image.png",)
    records = [
        Record("kept", path, {"objects": [box("cat", 0, 0, 40, 40), box("dog", 50, 50, 60, 60)]}),  # 1,600 and 100
        Record("crowded", path, {"objects": [box(f"o{i}", 0, 0, 40, 40, i) for i in range(4)]}),  # 4 objects
        Record("twice", path, {"objects": [box("cat", 0, 0, 40, 40), box("cat", 50, 50, 90, 90, 1)]}),  # 2 cats
        Record("masked", path, {"objects": [box("bird", 0, 0, 60, 60)], "masks": str(tmp_path / "mask.png")}),
    ]
    chosen = selection.targets(Dataset("d", tmp_path, None, records))
    assert chosen == [(0, "cat"), (3, "bird")]
    boxes_only = selection.targets(Dataset("d", tmp_path, None, records), selection.Selection(region=regions.BOX))
    assert boxes_only == [(0, "cat")]  # the bird's box is 3,600 px²
    assert selection.targets(Dataset("d", tmp_path, None, records), selection.Selection(50, 150)) == [(0, "dog")]


def test_noise_replaces_exactly_the_object_pixels():
    image = Image.new("RGB", (20, 10), (7, 7, 7))
    pixels = np.zeros((10, 20), bool)
    pixels[2:5, 3:9] = True
    noised = np.asarray(selection.noised(image, pixels, seed=0, sample_id="x"))
    assert (noised[~pixels] == 7).all() and (noised[pixels] != 7).any(axis=-1).mean() > 0.9
    assert np.array_equal(noised, np.asarray(selection.noised(image, pixels, seed=0, sample_id="x")))
    assert not np.array_equal(noised, np.asarray(selection.noised(image, pixels, seed=0, sample_id="y")))


def test_hallucination_control_against_plain_forward_passes(tiny_model, synthetic_root):
    loaded = tiny_model("tiny-llava-ov")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, 3)
    chosen = [(index, record.annotation["objects"][0]["label"]) for index, record in enumerate(dataset.records)]
    rows = selection.hallucination_control(loaded, dataset, chosen, seed=4)
    yes, no = answer_token_ids(loaded)
    for (index, label), found in zip(chosen, rows, strict=True):
        record = dataset.records[index]
        image = load_image(record.image_paths[0])
        region = regions.object_region(record.annotation, label, (image.height, image.width))
        prompt = build_prompt(loaded.processor, "chat", POLL_QUESTION.format(object=label), 1)
        said = []
        for shown in (image, selection.noised(image, region.pixels, 4, record.sample_id)):
            inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [shown])
            with torch.inference_mode():
                logits = loaded.model(**inputs, logits_to_keep=1).logits[0, -1]
            said.append(bool(logits[yes] > logits[no]))
        assert (found["yes_on_image"], found["yes_when_noised"]) == tuple(said)
        assert found["kept"] == (said[0] and not said[1]) and found["area"] == region.area
