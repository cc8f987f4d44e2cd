"""LLaVA-OneVision (SigLIP + Qwen2, anyres_max_9): the only module that knows its quirks.

Image token layout of one image (single-image prompt), as `LlavaOnevisionModel.pack_image_features`
packs it: the base view (p x p, whole image squashed to one tile, no newline tokens), then the
high-resolution tile grid with the letterbox padding removed, row by row, each row followed by one
`image_newline` token. When sqrt(rows * cols / (9 p^2)) > 1.1 the grid is bilinearly downsampled
first, so a token no longer maps to one patch: those tokens are marked `downsampled` and carry the
nearest source patch. In multi-image prompts each image is only its base view plus one newline.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import (
    LlavaOnevisionConfig,
    LlavaOnevisionImageProcessorPil,
    LlavaOnevisionProcessor,
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2Config,
    SiglipVisionConfig,
)

from capture.errors import CaptureError
from capture.families.anyres import base_view_layout, high_res_layout, single_newline_layout
from capture.families.base import TINY_TEXT_SIZES, TINY_VISION_SIZES, FamilyAdapter, ImageLayout, concat_layouts
from capture.tiny_tokenizer import build_byte_tokenizer

# Renders content items in the order given, so a text prefix can precede the image.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


_SIGLIP_384 = {"model_type": "siglip_vision_model", "image_size": 384, "patch_size": 14, "hidden_size": 1152,
               "intermediate_size": 4304, "num_hidden_layers": 26, "num_attention_heads": 16, "vision_use_head": False}


def _released(hidden: int, layers: int, heads: int, kv_heads: int, intermediate: int) -> dict[str, Any]:
    """A released OneVision checkpoint's config fields (Qwen2 LM of the given sizes, SigLIP-384, 1..6 x 1..6 tiles)."""
    return {
        "model_type": "llava_onevision",
        "text_config": {"model_type": "qwen2", "hidden_size": hidden, "num_hidden_layers": layers,
                        "num_attention_heads": heads, "num_key_value_heads": kv_heads, "intermediate_size": intermediate},
        "vision_config": _SIGLIP_384,
        "image_grid_pinpoints": [[384 * i, 384 * j] for i in range(1, 7) for j in range(1, 7)],
        "vision_aspect_ratio": "anyres_max_9",
        "vision_feature_select_strategy": "full",
        "vision_feature_layer": -1,
    }


REFERENCE_CONFIGS = {
    "llava-ov-0.5b": _released(896, 24, 14, 2, 4864),
    "llava-ov-7b": _released(3584, 28, 28, 4, 18944),
    "llava-ov-72b": _released(8192, 80, 64, 8, 29568),
}


class LlavaOnevisionImageProcessor(LlavaOnevisionProcessor):
    """`LlavaOnevisionProcessor` without its video processor, which needs torchvision.

    The signature is spelled out: transformers derives the saved attributes from it.
    """

    def __init__(
        self,
        image_processor=None,
        tokenizer=None,
        num_image_tokens=None,
        vision_feature_select_strategy=None,
        chat_template=None,
        image_token="<image>",
        video_token="<video>",
        vision_aspect_ratio="anyres_max_9",
        **kwargs,
    ):
        super().__init__(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=num_image_tokens,
            vision_feature_select_strategy=vision_feature_select_strategy,
            chat_template=chat_template,
            image_token=image_token,
            video_token=video_token,
            vision_aspect_ratio=vision_aspect_ratio,
            **kwargs,
        )


class LlavaOnevisionAdapter(FamilyAdapter):
    family = "llava_onevision"
    model_types = ("llava_onevision",)
    processor_class = LlavaOnevisionImageProcessor
    reference_configs = REFERENCE_CONFIGS

    # --- layout ----------------------------------------------------------------------------------
    def image_layouts(self, processor: Any, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[ImageLayout]:
        if config.vision_feature_select_strategy != "full":
            raise CaptureError(
                f"llava_onevision with vision_feature_select_strategy={config.vision_feature_select_strategy!r} "
                "is not supported (OneVision checkpoints use 'full')"
            )
        tile_px = config.vision_config.image_size
        patches = tile_px // config.vision_config.patch_size
        if len(image_sizes) > 1:
            return [concat_layouts([base_view_layout(patches), single_newline_layout(patches)]) for _ in image_sizes]
        height, width = image_sizes[0]
        max_tiles = int(config.vision_aspect_ratio.removeprefix("anyres_max_"))
        grid = high_res_layout(height, width, tile_px, patches, config.image_grid_pinpoints, max_tiles)
        return [concat_layouts([base_view_layout(patches), grid])]

    # --- tiny model ------------------------------------------------------------------------------
    def tiny_tokenizer(self, corpus: list[str] | None = None, vocab_size: int = 0) -> PreTrainedTokenizerBase:
        """The byte tokenizer; given a `corpus`, byte-level BPE trained on it up to `vocab_size` (the toy model)."""
        return build_byte_tokenizer(
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_attributes={"image_token": "<image>", "video_token": "<video>"},
            chat_template=TINY_CHAT_TEMPLATE,
            corpus=corpus,
            vocab_size=vocab_size,
        )

    def tiny_config(self, tokenizer: PreTrainedTokenizerBase, *, tile_px: int = 56, patch_px: int = 14,
                    text_sizes: dict | None = None, vision_sizes: dict | None = None, intermediate_size: int = 176,
                    max_tiles_per_side: int = 6) -> LlavaOnevisionConfig:
        """The tiny config; the keyword arguments size the trained toy model (`toy.model`)."""
        text = Qwen2Config(
            vocab_size=len(tokenizer), intermediate_size=intermediate_size, max_position_embeddings=8192,
            rope_theta=1_000_000.0, **(text_sizes or TINY_TEXT_SIZES), eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        vision = SiglipVisionConfig(image_size=tile_px, patch_size=patch_px, vision_use_head=False,
                                    **(vision_sizes or TINY_VISION_SIZES))
        sides = range(1, max_tiles_per_side + 1)
        return LlavaOnevisionConfig(
            text_config=text,
            vision_config=vision,
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            # The real checkpoints' 1..6 x 1..6 tile pinpoints, at the tiny tile size.
            image_grid_pinpoints=[[tile_px * i, tile_px * j] for i in sides for j in sides],
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> LlavaOnevisionImageProcessor:
        tile_px = config.vision_config.image_size
        image_processor = LlavaOnevisionImageProcessorPil(
            size={"height": tile_px, "width": tile_px},
            image_grid_pinpoints=config.image_grid_pinpoints,
        )
        return LlavaOnevisionImageProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            num_image_tokens=(tile_px // config.vision_config.patch_size) ** 2,
            vision_feature_select_strategy="full",
            chat_template=TINY_CHAT_TEMPLATE,
            vision_aspect_ratio=config.vision_aspect_ratio,
        )
