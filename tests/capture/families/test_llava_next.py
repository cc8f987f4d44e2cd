"""LLaVA-NeXT specifics: full anyres for every image of a multi-image prompt, images before text."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capture.errors import CaptureError
from capture.prompts import build_prompt
from store.schema import ImagePart, TokenKind

from .conformance import FamilyAdapterTests


def test_every_image_gets_full_anyres(tiny_model, noise_image):
    tiny = tiny_model("tiny-llava-next")
    sizes = [(80, 100), (480, 640)]  # (h, w)
    prompt = build_prompt(tiny.processor, "chat", "Compare.", 2)
    inputs = tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(w, h) for h, w in sizes])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, sizes)
    single = [tiny.adapter.token_table(tiny.processor, tiny.config, tiny.adapter.processor_inputs(
        tiny.processor, build_prompt(tiny.processor, "chat", "x", 1), [noise_image(w, h)]), [(h, w)]) for h, w in sizes]
    for index in (0, 1):
        mine = table.fields["image_index"] == index
        alone = single[index].fields["image_index"] == 0
        assert np.array_equal(table.fields["kind"][mine], single[index].fields["kind"][alone])
        assert (table.fields["image_part"][mine] == ImagePart.GRID).any()
        assert (table.fields["kind"][mine] == TokenKind.IMAGE_NEWLINE).any()
    with torch.inference_mode():  # the model accepts exactly this many placeholders
        tiny.model(**inputs)


def test_bos_and_images_first(tiny_model):
    tiny = tiny_model("tiny-llava-next")
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
    assert prompt.index("<image>") < prompt.index("Describe.")
    ids = tiny.processor.tokenizer(prompt)["input_ids"]
    assert ids[0] == tiny.processor.tokenizer.bos_token_id
    with pytest.raises(CaptureError, match="moves images before all text"):
        build_prompt(tiny.processor, "chat", "Describe.", 1, prefix="A dog.")


def test_full_feature_selection_is_refused(tiny_model, noise_image):
    tiny = tiny_model("tiny-llava-next")
    config = tiny.config.__class__.from_dict(tiny.config.to_dict())
    config.vision_feature_select_strategy = "full"
    inputs = tiny.adapter.processor_inputs(tiny.processor, build_prompt(tiny.processor, "chat", "x", 1), [noise_image(60, 50)])
    with pytest.raises(CaptureError, match="'full' is not supported"):
        tiny.adapter.token_table(tiny.processor, config, inputs, [(50, 60)])


class TestLlavaNextConformance(FamilyAdapterTests):
    family = "llava_next"
