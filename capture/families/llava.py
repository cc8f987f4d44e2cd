"""LLaVA-1.5 (CLIP ViT-L/14-336 + Llama-2 / Vicuna): the only module that knows its quirks.

Each image is one square tile of p x p patches (24 x 24 = 576 at 336 px), emitted row-major with no
newline tokens; the CLS token is dropped ("default" feature selection). The tile shows the image
after the image processor's geometry: HF checkpoints resize the shortest edge and centre-crop, so
the strips outside the crop have no token; `do_pad` processors pad to a square first instead. The
llava-hf chat template puts every image before the text of its turn.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import (
    CLIPImageProcessorPil,
    CLIPVisionConfig,
    LlamaConfig,
    LlavaConfig,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from capture.families.base import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    FamilyAdapter,
    ImageLayout,
    grid_layout,
    tiny_special_token_ids,
)
from capture.tiny_tokenizer import build_byte_tokenizer
from store.schema import ImagePart

# The llava-hf LLaVA-1.5 template: "USER: <image>\n<text> ASSISTANT:", images first.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if message['role'] != 'system' %}{{ message['role'].upper() + ': ' }}{% endif %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + ' ' }}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)


# CLIP ViT-L/14 at 336 px, the tower of LLaVA-1.5 and Llama-3-LLaVA-NeXT.
CLIP_VIT_L_336 = {"model_type": "clip_vision_model", "image_size": 336, "patch_size": 14, "hidden_size": 1024,
                  "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16, "projection_dim": 768}
REFERENCE_CONFIGS = {
    "llava-1.5-7b": {
        "model_type": "llava",
        "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 32, "intermediate_size": 11008},
        "vision_config": CLIP_VIT_L_336,
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    },
}


class LlavaAdapter(FamilyAdapter):
    family = "llava"
    model_types = ("llava",)
    processor_class = LlavaProcessor
    reference_configs = REFERENCE_CONFIGS

    def image_layouts(self, processor: Any, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[ImageLayout]:
        patches = config.vision_config.image_size // config.vision_config.patch_size
        return [tile_layout(processor.image_processor, h, w, patches) for h, w in image_sizes]

    # --- tiny model ------------------------------------------------------------------------------
    def tiny_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_byte_tokenizer(
            ["<unk>", "<s>", "</s>", "<pad>", "<image>"],
            bos_token="<s>",
            eos_token="</s>",
            pad_token="<pad>",
            extra_attributes={"image_token": "<image>"},
            chat_template=TINY_CHAT_TEMPLATE,
            add_bos=True,
        )

    def tiny_config(self, tokenizer: PreTrainedTokenizerBase) -> LlavaConfig:
        text = LlamaConfig(
            vocab_size=len(tokenizer), intermediate_size=176, max_position_embeddings=4096,  # Llama-2-7B's 2.7x ratio
            **TINY_TEXT_SIZES, **tiny_special_token_ids(tokenizer),
        )
        vision = CLIPVisionConfig(image_size=56, patch_size=14, projection_dim=32, **TINY_VISION_SIZES)
        return LlavaConfig(
            text_config=text,
            vision_config=vision,
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_seq_length=(56 // 14) ** 2,
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> LlavaProcessor:
        tile_px = config.vision_config.image_size
        image_processor = CLIPImageProcessorPil(
            size={"shortest_edge": tile_px}, crop_size={"height": tile_px, "width": tile_px}, do_center_crop=True
        )
        return LlavaProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=config.vision_config.patch_size,
            vision_feature_select_strategy="default",
            chat_template=TINY_CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )


def tile_layout(image_processor: Any, height: int, width: int, patches: int) -> ImageLayout:
    """The p x p token grid of one image, with each token's box in the original image."""
    to_tile = _tile_transform(image_processor, height, width)

    def box_of(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        tile_px = to_tile["tile"]
        u0, u1 = cols * tile_px / patches, (cols + 1) * tile_px / patches
        v0, v1 = rows * tile_px / patches, (rows + 1) * tile_px / patches
        x0, x1 = (u0 * to_tile["sx"] + to_tile["ox"]) / width, (u1 * to_tile["sx"] + to_tile["ox"]) / width
        y0, y1 = (v0 * to_tile["sy"] + to_tile["oy"]) / height, (v1 * to_tile["sy"] + to_tile["oy"]) / height
        return np.clip(np.stack([x0, y0, x1, y1], axis=1), 0.0, 1.0)

    return grid_layout(patches, patches, part=ImagePart.BASE, box_of=box_of)


def _tile_transform(image_processor: Any, height: int, width: int) -> dict[str, float]:
    """Affine map from tile pixels (u, v) to original pixels: x = u * sx + ox, y = v * sy + oy."""
    size, crop = image_processor.size, image_processor.crop_size
    ox = oy = 0.0
    h, w = float(height), float(width)
    if getattr(image_processor, "do_pad", False):  # centred pad to a square (LlavaImageProcessor)
        side = max(height, width)
        ox, oy = -((side - width) // 2), -((side - height) // 2)
        h = w = float(side)
    if size.get("shortest_edge"):
        short = size["shortest_edge"]
        if h <= w:
            new_h, new_w = short, int(short * w / h)
        else:
            new_h, new_w = int(short * h / w), short
    else:
        new_h, new_w = size["height"], size["width"]
    sx, sy = w / new_w, h / new_h
    tile = new_h
    if image_processor.do_center_crop:
        crop_h, crop_w = crop["height"], crop["width"]
        ox += (new_w - crop_w) // 2 * sx
        oy += (new_h - crop_h) // 2 * sy
        tile = crop_h
    return {"sx": sx, "sy": sy, "ox": ox, "oy": oy, "tile": tile}
