"""Prompt formats: chat, raw, prefix, Jung et al.'s bbox prompt and its visual prefix, Wei's prompt sets."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tokenizers import AddedToken

import store.reader
from capture.errors import CaptureError
from capture.loading import open_model, resolve_model
from capture.options import CaptureOptions
from capture.prompts import NORMAL_PROMPTS, bbox_prompt, build_prompt, fill_fields, prompt_set_text
from capture.registry import TINY_MODELS
from capture.run import run_capture
from store.schema import TokenKind

FAMILIES = sorted(TINY_MODELS)


@pytest.fixture(scope="module")
def opened(cache_home):
    return {name: open_model(resolve_model(name), "auto", "cpu") for name in FAMILIES}


def test_chat_template_with_prefix_before_the_image(opened):
    processor = opened["tiny-llava-ov"].processor
    prompt = build_prompt(processor, "chat", "Describe.", 1, prefix="A photo of a dog.")
    assert prompt == "<|im_start|>user\nA photo of a dog.<image>\nDescribe.<|im_end|>\n<|im_start|>assistant\n"


def test_raw_template(opened):
    processor = opened["tiny-llava-ov"].processor
    assert build_prompt(processor, "{image}{text}", "cat", 2, prefix="pets: ") == "pets: <image><image>cat"
    with pytest.raises(CaptureError, match="needs an {image} slot"):
        build_prompt(processor, "{text}", "cat", 1)
    qwen = opened["tiny-qwen2.5-vl"]
    placeholder = qwen.adapter.image_placeholder(qwen.processor)
    assert build_prompt(qwen.processor, "{image}{text}", "cat", 1, placeholder=placeholder) == \
        "<|vision_start|><|image_pad|><|vision_end|>cat"


def test_bbox_prompt_format():
    class Tok:  # the format does not depend on the tokenizer unless cutting a visual prefix
        pass

    prompt, next_token = bbox_prompt(Tok(), "<image>", [12.3, 45.6, 300.0, 239.9], 640, 480, "dog")
    assert prompt == "<image> bbox:[0.02,0.10,0.47,0.50] dog\n" and next_token is None


@pytest.mark.parametrize("merged_label", [False, True])
@pytest.mark.parametrize("name", FAMILIES)
def test_visual_prefix_ends_right_before_the_label(opened, noise_image, name, merged_label):
    loaded = opened[name]
    tokenizer = loaded.processor.tokenizer
    if merged_label:  # a tokenizer that merges the space into the label, like real BPE vocabularies
        tokenizer = tokenizer.__class__.from_pretrained(loaded.resolved.local_dir)
        tokenizer.add_tokens([AddedToken(" circle", normalized=False)])
        loaded.processor.tokenizer, original = tokenizer, loaded.processor.tokenizer
    try:
        placeholder = loaded.adapter.image_placeholder(loaded.processor)
        box, image = [10, 20, 60, 70], noise_image(100, 80)
        full, _ = bbox_prompt(tokenizer, placeholder, box, 100, 80, "circle")
        prefix, next_token = bbox_prompt(tokenizer, placeholder, box, 100, 80, "circle", visual_prefix=True)
        assert full.startswith(prefix) and full[len(prefix):].strip() == "circle"
        ids_full = loaded.adapter.processor_inputs(loaded.processor, full, [image])["input_ids"][0].tolist()
        ids_prefix = loaded.adapter.processor_inputs(loaded.processor, prefix, [image])["input_ids"][0].tolist()
        assert ids_full[: len(ids_prefix)] == ids_prefix
        assert ids_full[len(ids_prefix)] == next_token
        rest = tokenizer.decode(ids_full[len(ids_prefix):])
        assert rest == (" circle\n" if merged_label else "circle\n")
        assert prefix.endswith("]" if merged_label else "] ")
    finally:
        if merged_label:
            loaded.processor.tokenizer = original


def _image_rows(ds, sample):
    n = int(ds.n_tokens[sample])
    kind = ds.kind.values[sample, :n]
    return np.isin(kind, (TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE)), n


@pytest.mark.parametrize("name", FAMILIES)
def test_prefix_changes_image_keys_and_values_and_text_after_does_not(name, synthetic_root, tmp_path):
    """Causal attention: text before the image changes its K/V; text after it cannot."""

    def capture(tag, **options):
        out = tmp_path / f"{tag}.zarr"
        run_capture(CaptureOptions(model=name, data_root=synthetic_root, limit=2, out=out, template="{image}{text}",
                                   tokens="image", dtype="fp32", progress=False, **options))
        return store.reader.open(out)

    base = capture("base", prompt="Describe.")
    other_text = capture("text", prompt="Name the shapes, please.")
    dog = capture("dog", prefix="A dog. ")
    cat = capture("cat", prefix="A cat. ")  # same length as the dog prefix: same image positions
    for sample in range(2):
        for name_ in ("keys", "values"):
            # fp32 rounding only: CPU matmul kernels may block by sequence length (AVX-512 ones do), so the same
            # rows can differ in the last bits when the text after them is longer
            a, b = base[name_].isel(sample=sample).values, other_text[name_].isel(sample=sample).values
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
            c, d = dog[name_].isel(sample=sample).values, cat[name_].isel(sample=sample).values
            n = int(dog.n_tokens[sample])
            assert np.abs(c[..., :n, :] - d[..., :n, :]).max() > 1e-3  # a prefix changes them beyond rounding
        assert int(base.n_tokens[sample]) == int(dog.n_tokens[sample])  # --tokens image: the same image tokens


def test_chat_prefix_is_refused_where_the_template_moves_images_first(opened):
    with pytest.raises(CaptureError, match="moves images before all text"):
        build_prompt(opened["tiny-llava-1.5"].processor, "chat", "Describe.", 1, prefix="A dog.")


def test_prefix_from_record_fields(synthetic_root, tmp_path):
    out = tmp_path / "caption.zarr"
    run_capture(CaptureOptions(model="tiny-qwen2.5-vl", data_root=synthetic_root, limit=2, out=out,
                               prefix="{caption} ", tokens="last", progress=False))
    ds = store.reader.open(out)
    for sample in range(2):
        caption = json.loads(str(ds.annotation.values[sample]))["captions"][0]
        assert f"user\n{caption} <|vision_start|>" in str(ds.prompt.values[sample])
    with pytest.raises(CaptureError, match=r"names \{label\}"):
        fill_fields("{label}", {"caption": "x"}, "--prefix")


def test_prompt_sets(opened, synthetic_root, tmp_path):
    tokenizer = opened["tiny-llava-ov"].processor.tokenizer
    assert [prompt_set_text("normal", i, tokenizer) for i in range(6)] == [*NORMAL_PROMPTS, NORMAL_PROMPTS[0]]
    assert prompt_set_text("empty", 3, tokenizer) == ""
    noisy = [prompt_set_text("noisy", i, tokenizer) for i in range(4)]
    assert noisy == [prompt_set_text("noisy", i, tokenizer) for i in range(4)]  # seeded per sample
    assert len(set(noisy)) == 4 and all(len(t) >= 8 for t in noisy)
    special = set(tokenizer.all_special_tokens)
    assert not any(s in t for t in noisy for s in special)

    for prompt_set in ("normal", "noisy", "empty"):
        out = tmp_path / f"{prompt_set}.zarr"
        run_capture(CaptureOptions(model="tiny-llava-ov", data_root=synthetic_root, limit=3, out=out,
                                   prompt_set=prompt_set, tokens="last", progress=False))
        ds = store.reader.open(out)
        assert ds.attrs["capture_config"]["prompt_set"] == prompt_set
        for i in range(3):
            expected = prompt_set_text(prompt_set, i, tokenizer)
            assert str(ds.prompt.values[i]).endswith(f"<image>\n{expected}<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("template, prefix", [("chat", None), ("chat", "A photo."), ("{image}\n{text}", "pets: ")])
def test_user_text_tokens_are_exactly_the_users_text(opened, noise_image, name, template, prefix):
    """The text repeats words of the chat template ("user", "assistant"): the span comes from where the template
    puts the text, not from searching for it."""
    from capture.samples import prepare_sample
    from capture.user_text import user_text_span

    model = opened[name]
    placeholder = model.adapter.image_placeholder(model.processor)
    text = "user: assistant, describe"
    try:
        prompt = build_prompt(model.processor, template, text, 1, prefix, placeholder)
    except CaptureError:  # chat templates that move images before all text take no prefix
        pytest.skip(f"{name}'s chat template cannot place a prefix before the image")
    span = user_text_span(model.processor, prompt, template, text, 1, prefix, placeholder)
    prepared = prepare_sample(model, prompt, [noise_image(60, 50)], user_text=span)
    mask = prepared.table.fields["user_text"]
    ids = prepared.inputs["input_ids"][0].numpy()
    assert model.processor.tokenizer.decode(ids[mask]) == text
    assert np.flatnonzero(mask).tolist() == list(range(np.flatnonzero(mask)[0], np.flatnonzero(mask)[-1] + 1))
    assert user_text_span(model.processor, build_prompt(model.processor, template, "", 1, prefix, placeholder),
                          template, "", 1, prefix, placeholder) is None


def test_captured_stores_mark_the_user_text(opened, synthetic_root, tmp_path):
    out = tmp_path / "s.zarr"
    run_capture(CaptureOptions(model="tiny-llava-ov", data_root=synthetic_root, limit=2, out=out, prompt_set="normal",
                               progress=False))
    ds = store.reader.open(out)
    tokenizer = opened["tiny-llava-ov"].processor.tokenizer
    for sample in range(2):
        ids = ds.token_id.values[sample][ds.user_text.values[sample]]
        assert tokenizer.decode(ids) == NORMAL_PROMPTS[sample]
