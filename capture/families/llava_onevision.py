"""LLaVA-OneVision (SigLIP + Qwen2, anyres_max_9): the only module that knows its quirks.

Image token layout of one image (single-image prompt), as `LlavaOnevisionModel.pack_image_features`
packs it: the base view (p x p, whole image squashed to one tile, no newline tokens), then the
high-resolution tile grid with the letterbox padding removed, row by row, each row followed by one
`image_newline` token. When sqrt(rows * cols / (9 p^2)) > 1.1 the grid is bilinearly downsampled
first, so a token no longer maps to one patch: those tokens are marked `downsampled` and carry the
nearest source patch. In multi-image prompts each image is only its base view plus one newline.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
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
from transformers.image_processing_utils import select_best_resolution

from capture.errors import CaptureError
from capture.families.base import FamilyAdapter, ImageLayout, concat_layouts, grid_layout
from capture.tiny_tokenizer import build_byte_tokenizer
from store.schema import ImagePart

# Renders content items in the order given, so a text prefix can precede the image.
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


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

    def load_processor(self, model_dir: Path) -> LlavaOnevisionImageProcessor:
        image_processor = LlavaOnevisionImageProcessorPil.from_pretrained(model_dir)
        return LlavaOnevisionImageProcessor.from_pretrained(model_dir, image_processor=image_processor)

    # --- layout ----------------------------------------------------------------------------------
    def image_layouts(self, processor: Any, config: PretrainedConfig, inputs: dict[str, torch.Tensor]) -> list[ImageLayout]:
        if config.vision_feature_select_strategy != "full":
            raise CaptureError(
                f"llava_onevision with vision_feature_select_strategy={config.vision_feature_select_strategy!r} "
                "is not supported (OneVision checkpoints use 'full')"
            )
        tile_px = config.vision_config.image_size
        patches = tile_px // config.vision_config.patch_size
        image_sizes = [tuple(int(v) for v in size) for size in inputs["image_sizes"]]
        if len(image_sizes) > 1:
            return [concat_layouts([_base_layout(patches), _single_newline(patches)]) for _ in image_sizes]
        height, width = image_sizes[0]
        grid = _grid_layout(height, width, tile_px, patches, config.image_grid_pinpoints, config.vision_aspect_ratio)
        return [concat_layouts([_base_layout(patches), grid])]

    # --- tiny model ------------------------------------------------------------------------------
    def tiny_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_byte_tokenizer(
            ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<image>", "<video>"],
            bos_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            extra_attributes={"image_token": "<image>", "video_token": "<video>"},
            chat_template=TINY_CHAT_TEMPLATE,
        )

    def tiny_config(self, tokenizer: PreTrainedTokenizerBase) -> LlavaOnevisionConfig:
        tile_px = 56
        text = Qwen2Config(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=176,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=8192,
            rope_theta=1_000_000.0,
            tie_word_embeddings=False,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        vision = SiglipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=tile_px,
            patch_size=14,
            vision_use_head=False,
        )
        return LlavaOnevisionConfig(
            text_config=text,
            vision_config=vision,
            image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
            video_token_index=tokenizer.convert_tokens_to_ids("<video>"),
            vision_feature_select_strategy="full",
            vision_feature_layer=-1,
            # The real checkpoints' 1..6 x 1..6 tile pinpoints, at the tiny tile size.
            image_grid_pinpoints=[[tile_px * i, tile_px * j] for i in range(1, 7) for j in range(1, 7)],
            vision_aspect_ratio="anyres_max_9",
            tie_word_embeddings=False,
        )

    def tiny_processor(self, tokenizer: PreTrainedTokenizerBase, config: PretrainedConfig) -> LlavaOnevisionImageProcessor:
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


def _base_layout(patches: int) -> ImageLayout:
    def box_of(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.stack([cols / patches, rows / patches, (cols + 1) / patches, (rows + 1) / patches], axis=1)

    return grid_layout(patches, patches, part=ImagePart.BASE, box_of=box_of)


def _single_newline(patches: int) -> ImageLayout:
    layout = grid_layout(1, 0, part=ImagePart.BASE, box_of=lambda r, c: np.zeros((0, 4)), newline_after_row=True)
    layout.grid_row[:] = patches - 1
    layout.grid_col[:] = patches
    return layout


def _grid_layout(
    height: int, width: int, tile_px: int, patches: int, pinpoints: list[list[int]], aspect_ratio: str
) -> ImageLayout:
    """The high-resolution view of an image of `height` x `width` pixels."""
    best_h, best_w = select_best_resolution((height, width), pinpoints)
    full_rows, full_cols = best_h // tile_px * patches, best_w // tile_px * patches
    # Letterbox padding removed from the stitched patch grid (as the model's unpad_image does).
    row0, col0, rows, cols = 0, 0, full_rows, full_cols
    if width / height > full_cols / full_rows:
        pad = (full_rows - int(round(height * (full_cols / width), 7))) // 2
        row0, rows = pad, full_rows - 2 * pad
    else:
        pad = (full_cols - int(round(width * (full_rows / height), 7))) // 2
        col0, cols = pad, full_cols - 2 * pad
    max_tiles = int(aspect_ratio.removeprefix("anyres_max_"))
    ratio = math.sqrt(rows * cols / (max_tiles * patches**2))
    downsampled = ratio > 1.1
    out_rows, out_cols = (int(rows // ratio), int(cols // ratio)) if downsampled else (rows, cols)

    # Pixel placement of the resized image on the best-resolution canvas (the processor's padding).
    scale_w, scale_h = best_w / width, best_h / height
    if scale_w < scale_h:
        content_w, content_h = best_w, min(math.ceil(height * scale_w), best_h)
    else:
        content_h, content_w = best_h, min(math.ceil(width * scale_h), best_w)
    paste_y, paste_x = (best_h - content_h) // 2, (best_w - content_w) // 2
    patch_px = tile_px / patches

    def source(index: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
        """Nearest source cell of an output cell under bilinear resizing (align_corners=False)."""
        centre = np.clip((index + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        return np.floor(centre + 0.5).astype(np.int64)

    def tile_patch_of(r: np.ndarray, c: np.ndarray):
        abs_row = row0 + source(r, out_rows, rows)
        abs_col = col0 + source(c, out_cols, cols)
        return abs_row // patches, abs_col // patches, abs_row % patches, abs_col % patches

    def box_of(r: np.ndarray, c: np.ndarray) -> np.ndarray:
        y0 = (row0 + r * rows / out_rows) * patch_px
        y1 = (row0 + (r + 1) * rows / out_rows) * patch_px
        x0 = (col0 + c * cols / out_cols) * patch_px
        x1 = (col0 + (c + 1) * cols / out_cols) * patch_px
        box = np.stack([(x0 - paste_x) / content_w, (y0 - paste_y) / content_h,
                        (x1 - paste_x) / content_w, (y1 - paste_y) / content_h], axis=1)
        return np.clip(box, 0.0, 1.0)

    return grid_layout(
        out_rows, out_cols, part=ImagePart.GRID, box_of=box_of, tile_patch_of=tile_patch_of,
        downsampled=downsampled, newline_after_row=True,
    )
