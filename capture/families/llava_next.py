"""LLaVA-NeXT (CLIP ViT-L/14-336 + Llama-3-8B in llama3-llava-next-8b): the only module that knows its quirks.

Every image, also in multi-image prompts, is laid out with full anyres (see `capture.families.anyres`):
the base tile (p x p, no newline tokens), then the stitched high-resolution grid with letterbox padding
removed, each row followed by one `image_newline` token; never downsampled. The CLS token is dropped
("default" feature selection), and the llava-hf chat template puts every image before the text.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    CLIPVisionConfig,
    LlamaConfig,
    LlavaNextConfig,
    LlavaNextImageProcessorPil,
    LlavaNextProcessor,
    PretrainedConfig,
    PreTrainedTokenizerBase,
)

from capture.errors import CaptureError
from capture.families.anyres import base_view_layout, high_res_layout
from capture.families.base import (
    TINY_TEXT_SIZES,
    TINY_VISION_SIZES,
    FamilyAdapter,
    ImageLayout,
    concat_layouts,
    tiny_special_token_ids,
)
from capture.families.llava import CLIP_VIT_L_336
from capture.tiny_tokenizer import build_byte_tokenizer

# The llava-hf Llama-3-LLaVA-NeXT template (Llama-3 headers, images first).
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'image') %}{{ '<image>\n' }}{% endfor %}"
    "{% for item in message['content'] | selectattr('type', 'equalto', 'text') %}{{ item['text'] + '<|eot_id|>' }}"
    "{% endfor %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# llama3-llava-next-8b's (height, width) pinpoints, in tiles: 1x2, 2x1, 2x2, 3x1, 1x3.
PINPOINT_TILES = [(1, 2), (2, 1), (2, 2), (3, 1), (1, 3)]


REFERENCE_CONFIGS = {
    "llama3-llava-next-8b": {
        "model_type": "llava_next",
        "text_config": {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                        "num_key_value_heads": 8, "intermediate_size": 14336},
        "vision_config": CLIP_VIT_L_336,
        "image_grid_pinpoints": [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]],
        "vision_feature_select_strategy": "default",
        "vision_feature_layer": -2,
    },
}


class LlavaNextAdapter(FamilyAdapter):
    family = "llava_next"
    model_types = ("llava_next",)
    processor_class = LlavaNextProcessor
    reference_configs = REFERENCE_CONFIGS

    def image_layouts(self, processor: Any, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[ImageLayout]:
        if config.vision_feature_select_strategy != "default":
            raise CaptureError(
                f"llava_next with vision_feature_select_strategy={config.vision_feature_select_strategy!r} is not "
                "supported (the model's tile packing needs the CLS token dropped: 'default')"
            )
        tile_px = config.vision_config.image_size
        patches = tile_px // config.vision_config.patch_size
        return [
            concat_layouts([base_view_layout(patches),
                            high_res_layout(h, w, tile_px, patches, config.image_grid_pinpoints)])
            for h, w in image_sizes
        ]

    # --- tiny model ------------------------------------------------------------------------------
    def tiny_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_byte_tokenizer(
            ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
             "<pad>", "<image>"],
            bos_token="<|begin_of_text|>",
            eos_token="<|eot_id|>",
            pad_token="<pad>",
            extra_attributes={"image_token": "<image>"},
            chat_template=TINY_CHAT_TEMPLATE,
            add_bos=True,
        )

    def tiny_config(self, tokenizer: PreTrainedTokenizerBase) -> LlavaNextConfig:
        tile_px = 56
        text = LlamaConfig(
            vocab_size=len(tokenizer), intermediate_size=224, max_position_embeddings=8192,  # Llama-3-8B's 3.5x ratio
            rope_parameters={"rope_type": "default", "rope_theta": 500_000.0},
            **TINY_TEXT_SIZES, **tiny_special_token_ids(tokenizer),
        )
        vision = CLIPVisionConfig(image_size=tile_px, patch_size=14, projection_dim=32, **TINY_VISION_SIZES)
        return LlavaNextConfig(
            text_config=text,
            vision_config=vision,
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            image_grid_pinpoints=[[tile_px * h, tile_px * w] for h, w in PINPOINT_TILES],
            vision_feature_select_strategy="default",
            vision_feature_layer=-2,
            image_seq_length=(tile_px // 14) ** 2,
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> LlavaNextProcessor:
        tile_px = config.vision_config.image_size
        image_processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": tile_px},
            crop_size={"height": tile_px, "width": tile_px},
            image_grid_pinpoints=config.image_grid_pinpoints,
        )
        return LlavaNextProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            patch_size=config.vision_config.patch_size,
            vision_feature_select_strategy="default",
            chat_template=TINY_CHAT_TEMPLATE,
            num_additional_image_tokens=1,
        )
