from __future__ import annotations

import pytest

from capture.errors import CaptureError
from capture.loading import open_model, resolve_model
from capture.prompts import build_prompt


@pytest.fixture(scope="module")
def processor(cache_home):
    return open_model(resolve_model("tiny-llava-ov"), "auto", "cpu").processor


def test_chat_template_with_prefix_before_the_image(processor):
    prompt = build_prompt(processor, "chat", "Describe.", 1, prefix="A photo of a dog.")
    assert prompt == "<|im_start|>user\nA photo of a dog.<image>\nDescribe.<|im_end|>\n<|im_start|>assistant\n"


def test_raw_template(processor):
    assert build_prompt(processor, "{image}{text}", "cat", 2, prefix="pets: ") == "pets: <image><image>cat"
    with pytest.raises(CaptureError, match="needs an {image} slot"):
        build_prompt(processor, "{text}", "cat", 1)
