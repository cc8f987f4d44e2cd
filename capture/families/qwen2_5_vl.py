"""Qwen2.5-VL (window-attention ViT + Qwen2 with M-RoPE): the only module that knows its quirks.

The image is resized (no crop, no padding) to a multiple of 28 px within min/max pixels, cut into 14 px
patches, and each 2 x 2 block of patches is merged into one token: an (h/2) x (w/2) row-major grid
between `<|vision_start|>` and `<|vision_end|>`, one placeholder `<|image_pad|>` per token. Positions
are 3-D (temporal, row, column; M-RoPE): image tokens share one temporal id and carry their grid row
and column, offset by the text before them; text continues after the largest image id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import (
    PretrainedConfig,
    PreTrainedTokenizerBase,
    Qwen2_5_VLConfig,
    Qwen2_5_VLProcessor,
    Qwen2_5_VLTextConfig,
    Qwen2_5_VLVisionConfig,
    Qwen2VLImageProcessorPil,
)

from capture.families.base import TINY_TEXT_SIZES, FamilyAdapter, ImageLayout, grid_layout
from capture.tiny_tokenizer import build_byte_tokenizer
from store.schema import ImagePart

# The released processor's pixel budget: 4 to 16384 merged tokens of 28 x 28 px.
RELEASED_MIN_PIXELS, RELEASED_MAX_PIXELS = 56 * 56, 28 * 28 * 16384
# Qwen2.5-VL-Instruct's template: default system turn, content items rendered in the order given.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


REFERENCE_CONFIGS = {
    "qwen2.5-vl-7b": {
        "model_type": "qwen2_5_vl",
        "text_config": {"hidden_size": 3584, "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                        "intermediate_size": 18944,
                        "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]}},
        "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "patch_size": 14,
                          "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 112, "out_hidden_size": 3584,
                          "fullatt_block_indexes": [7, 15, 23, 31]},
    },
}


class Qwen2_5_VLImageProcessor(Qwen2_5_VLProcessor):
    """`Qwen2_5_VLProcessor` without its video processor, which needs torchvision.

    The signature is spelled out: transformers derives the saved attributes from it.
    """

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)


class Qwen2_5_VLAdapter(FamilyAdapter):
    family = "qwen2_5_vl"
    model_types = ("qwen2_5_vl",)
    processor_class = Qwen2_5_VLImageProcessor
    reference_configs = REFERENCE_CONFIGS

    def image_placeholder(self, processor: Any) -> str:
        tokenizer = processor.tokenizer
        start = getattr(tokenizer, "vision_start_token", None) or "<|vision_start|>"
        end = getattr(tokenizer, "vision_end_token", None) or "<|vision_end|>"
        return f"{start}{processor.image_token}{end}"

    def image_layouts(self, processor: Any, config: PretrainedConfig, inputs: dict[str, torch.Tensor],
                      image_sizes: list[tuple[int, int]]) -> list[ImageLayout]:
        merge = config.vision_config.spatial_merge_size
        layouts = []
        for t, h, w in inputs["image_grid_thw"].tolist():
            rows, cols = t * h // merge, w // merge  # a still image has t == 1

            def box_of(r: np.ndarray, c: np.ndarray, rows: int = rows, cols: int = cols) -> np.ndarray:
                # the whole image is resized onto the patch canvas, so token boxes are grid fractions
                return np.stack([c / cols, r / rows, (c + 1) / cols, (r + 1) / rows], axis=1)

            layout = grid_layout(rows, cols, part=ImagePart.BASE, box_of=box_of)
            layout.patch_row[:] = layout.grid_row * merge  # top-left patch of the merged 2 x 2 block
            layout.patch_col[:] = layout.grid_col * merge
            layouts.append(layout)
        return layouts

    def rope_position_ids(self, model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """(3, batch, seq) temporal / row / column ids, exactly as the model computes them."""
        if "image_grid_thw" not in inputs:
            return super().rope_position_ids(model, inputs).expand(3, -1, -1)
        position_ids, _ = model.model.get_rope_index(
            inputs["input_ids"], mm_token_type_ids=inputs["mm_token_type_ids"],
            image_grid_thw=inputs["image_grid_thw"], attention_mask=inputs.get("attention_mask"),
        )
        return position_ids

    # --- tiny model ------------------------------------------------------------------------------
    def tiny_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_byte_tokenizer(
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
             "<|video_pad|>"],
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_attributes={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>",
                              "vision_start_token": "<|vision_start|>", "vision_end_token": "<|vision_end|>"},
            chat_template=TINY_CHAT_TEMPLATE,
        )

    def tiny_config(self, tokenizer: PreTrainedTokenizerBase) -> Qwen2_5_VLConfig:
        text = Qwen2_5_VLTextConfig(
            vocab_size=len(tokenizer), intermediate_size=336, max_position_embeddings=8192,  # Qwen2.5-7B's 5.3x ratio
            # head_dim 16 -> 8 frequencies split 2/3/3 over (t, h, w), as 16/24/24 of 64 in the 7B
            rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [2, 3, 3]},
            **{k: v for k, v in TINY_TEXT_SIZES.items() if k != "tie_word_embeddings"},
            bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        vision = Qwen2_5_VLVisionConfig(
            depth=2, hidden_size=32, intermediate_size=64, num_heads=2, patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=56, out_hidden_size=64, fullatt_block_indexes=[1], tokens_per_second=2,
        )
        token = tokenizer.convert_tokens_to_ids
        return Qwen2_5_VLConfig(
            text_config=text,
            vision_config=vision,
            image_token_id=token("<|image_pad|>"),
            video_token_id=token("<|video_pad|>"),
            vision_start_token_id=token("<|vision_start|>"),
            vision_end_token_id=token("<|vision_end|>"),
            tie_word_embeddings=False,
        )

    def build_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig,
                        min_pixels: int = RELEASED_MIN_PIXELS, max_pixels: int = RELEASED_MAX_PIXELS) -> Qwen2_5_VLImageProcessor:
        image_processor = Qwen2VLImageProcessorPil(
            min_pixels=min_pixels, max_pixels=max_pixels, patch_size=config.vision_config.patch_size,
            merge_size=config.vision_config.spatial_merge_size, temporal_patch_size=config.vision_config.temporal_patch_size,
        )
        return Qwen2_5_VLImageProcessor(image_processor=image_processor, tokenizer=tokenizer,
                                        chat_template=TINY_CHAT_TEMPLATE)

    def tiny_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> Qwen2_5_VLImageProcessor:
        unit = config.vision_config.patch_size * config.vision_config.spatial_merge_size
        return self.build_processor(tokenizer, config, min_pixels=4 * unit * unit, max_pixels=48 * unit * unit)
