"""OneVision specifics: anyres_max_9 downsampling, multi-image layout, text and special tokens."""

from __future__ import annotations

import torch

from capture.prompts import build_prompt
from store.schema import TokenKind

from .conformance import FamilyAdapterTests


def test_downsampled_path_is_exercised(tiny_model, noise_image):
    """640x480 with the 6x6 pinpoints exceeds anyres_max_9 by > 1.1: tokens are marked downsampled."""
    tiny = tiny_model("tiny-llava-ov")
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
    big = tiny.adapter.token_table(tiny.processor, tiny.config,
                                   tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(640, 480)]), [(480, 640)])
    small = tiny.adapter.token_table(tiny.processor, tiny.config,
                                     tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(100, 80)]), [(80, 100)])
    assert big.fields["downsampled"].any() and not small.fields["downsampled"].any()


def test_multi_image_layout_is_base_plus_one_newline(tiny_model, noise_image):
    tiny = tiny_model("tiny-llava-ov")
    prompt = build_prompt(tiny.processor, "chat", "Compare.", 2)
    inputs = tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(100, 80), noise_image(640, 480)])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, [(80, 100), (480, 640)])
    patches = 4
    for index in (0, 1):
        kinds = table.fields["kind"][table.fields["image_index"] == index]
        assert list(kinds) == [TokenKind.IMAGE] * patches**2 + [TokenKind.IMAGE_NEWLINE]
    with torch.inference_mode():  # the model accepts exactly this many placeholders
        tiny.model(**inputs)


def test_text_and_special_tokens(tiny_model, noise_image):
    tiny = tiny_model("tiny-llava-ov")
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
    inputs = tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(56, 56)])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, [(56, 56)])
    ids = inputs["input_ids"][0].numpy()
    start = tiny.processor.tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert (table.fields["kind"][ids == start] == TokenKind.SPECIAL).all()
    text = table.fields["kind"] == TokenKind.TEXT
    assert tiny.processor.tokenizer.decode(ids[text]).replace("\n", "") == "userDescribe.assistant"


class TestLlavaOnevisionConformance(FamilyAdapterTests):
    family = "llava_onevision"
