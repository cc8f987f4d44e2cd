"""dino-smollm2-llava: SmolLM2's tokenizer with one token renamed, tied embeddings, and a token table that follows
the model's own packing of DINOv2 patches into image tokens."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import torch
from PIL import Image

from capture.prompts import build_prompt
from capture.real_parts.assemble import BUILD_FILE, PROJECTOR_FILE, build_record
from store.schema import ImagePart, TokenKind

GRID = 16  # 224 px / 14 px patches


def test_tokenizer_is_smollm2s_with_image_token_16(real_model, smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer, original = real_model.processor.tokenizer, AutoTokenizer.from_pretrained(smollm2_dir)
    assert original.convert_ids_to_tokens(16) == "<empty_output>"
    assert tokenizer.convert_tokens_to_ids("<image>") == 16 == real_model.config.image_token_id
    vocab, original_vocab = tokenizer.get_vocab(), original.get_vocab()
    assert len(vocab) == len(original_vocab) == 49152 and "<empty_output>" not in vocab
    assert {k: v for k, v in original_vocab.items() if k != "<empty_output>"} == {
        k: v for k, v in vocab.items() if k != "<image>"}
    text = "A quokka, photographed at 3 pm."
    assert tokenizer(text).input_ids == original(text).input_ids
    model = real_model.model
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()


def test_prompt_is_smollm2s_chat_template_with_the_image(real_model):
    prompt = build_prompt(real_model.processor, "chat", "Describe the image.", 1)
    assert prompt == ("<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                      "<|im_end|>\n<|im_start|>user\n<image>\nDescribe the image.<|im_end|>\n<|im_start|>assistant\n")
    prefixed = build_prompt(real_model.processor, "chat", "What is it?", 1, prefix="A photo. ")
    assert "<|im_start|>user\nA photo. <image>\nWhat is it?<|im_end|>" in prefixed


def test_token_table_follows_the_models_feature_packing(real_model, coordinate_image):
    """Patch (r, c) of the 224-px crop -> tower token r * 16 + c -> the (r * 16 + c)-th <image> token, whose table
    row says grid (r, c) and whose box holds the original pixels that patch shows."""
    width, height = 400, 300
    inputs = real_model.adapter.processor_inputs(
        real_model.processor, build_prompt(real_model.processor, "chat", "x", 1), [coordinate_image(width, height)])
    table = real_model.adapter.token_table(real_model.processor, real_model.config, inputs, [(height, width)])
    positions = np.flatnonzero(inputs["input_ids"][0].numpy() == 16)
    assert len(positions) == GRID * GRID and np.array_equal(np.flatnonzero(table.fields["image_index"] == 0), positions)
    assert (table.fields["kind"][positions] == TokenKind.IMAGE).all()
    assert (table.fields["image_part"][positions] == ImagePart.BASE).all()
    rows, cols = np.divmod(np.arange(GRID * GRID), GRID)
    assert np.array_equal(table.fields["grid_row"][positions], rows)
    assert np.array_equal(table.fields["grid_col"][positions], cols)

    pixels = inputs["pixel_values"]
    model = real_model.model
    embeddings = model.model.vision_tower.embeddings.patch_embeddings
    blocks = pixels[0].reshape(3, GRID, 14, GRID, 14).permute(1, 3, 0, 2, 4).reshape(GRID * GRID, 3 * 14 * 14)
    by_hand = blocks @ embeddings.projection.weight.reshape(384, -1).T + embeddings.projection.bias
    with torch.no_grad():
        assert torch.allclose(embeddings(pixels)[0], by_hand, atol=1e-4)  # tower token k is patch (k // 16, k % 16)
        features = model.model.get_image_features(pixels, vision_feature_layer=-2,
                                                  vision_feature_select_strategy="default").pooler_output[0]
        placed = model(**inputs, output_hidden_states=True).hidden_states[0][0, positions]
    assert torch.equal(placed, features)  # feature k sits at the k-th <image> token

    # the patch's pixels, decoded from the coordinate image, lie inside the table's box of that token
    mean, std = np.array(real_model.processor.image_processor.image_mean), np.array(real_model.processor.image_processor.image_std)
    rgb = pixels[0].numpy() * std[:, None, None] + mean[:, None, None]
    centres = rgb[:2].reshape(2, GRID, 14, GRID, 14).mean(axis=(2, 4)).reshape(2, -1).T  # (tokens, [x, y]) in [0, 1]
    box = table.box[positions]
    assert ((centres[:, 0] > box[:, 0] - 0.01) & (centres[:, 0] < box[:, 2] + 0.01)).all()
    assert ((centres[:, 1] > box[:, 1] - 0.01) & (centres[:, 1] < box[:, 3] + 0.01)).all()
    # centre crop of a 4:3 image: token columns span the middle 3/4 of the width, rows the whole height
    assert abs(box[:, 0].min() - 0.125) < 0.01 and abs(box[:, 2].max() - 0.875) < 0.01
    assert box[:, 1].min() == 0.0 and abs(box[:, 3].max() - 1.0) < 1e-6


def test_build_record_and_revision_name_the_projector(real_model_dir):
    from capture.loading import resolve_model

    record = json.loads((real_model_dir / BUILD_FILE).read_text())
    assert record == build_record("dino-smollm2-llava")
    sha256 = hashlib.sha256(PROJECTOR_FILE.read_bytes()).hexdigest()
    assert record["projector_sha256"] == sha256
    resolved = resolve_model("dino-smollm2-llava")
    assert resolved.local_dir == real_model_dir and resolved.revision == f"real-parts-v1+projector-{sha256[:12]}"


def test_image_size_and_projector_shapes(real_model):
    config = real_model.config
    assert config.vision_config.image_size == 224 and config.vision_feature_select_strategy == "default"
    projector = real_model.model.model.multi_modal_projector
    assert projector.linear_1.weight.shape == (576, 384) and projector.linear_2.weight.shape == (576, 576)
    image = Image.new("RGB", (50, 50))
    inputs = real_model.adapter.processor_inputs(real_model.processor, "<image>", [image])
    assert inputs["pixel_values"].shape == (1, 3, 224, 224)
