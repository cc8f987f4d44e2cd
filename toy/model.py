"""The toy model's architecture: LLaVA-OneVision at toy sizes, its trained tokenizer, and its cached build.

One 128-pixel tile of 8x8 patches (16 pixels each) covers a whole image (a single grid pinpoint), so an image
is the OneVision layout of a base view (64 tokens) plus one unpadded high-resolution tile with its newline
tokens: at most 136 image tokens, which keeps training on 2 CPU cores within minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capture.families import ADAPTERS
from capture.loading import TOY_BUILD_FILE
from capture.paths import models_dir

FAMILY = "llava_onevision"
TOY_VERSION = 2  # bump when the sizes, the data or the training recipe change: cached builds retrain
TILE_PX = 128
PATCH_PX = 16
VOCAB_SIZE = 384
TEXT_SIZES = {"hidden_size": 128, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
              "tie_word_embeddings": False}
FFN_KEYS = 384  # the language model's intermediate size: the number of FFN memory keys per layer
VISION_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 2}
CHAT_WORDS = ["user", "assistant"] * 100  # the chat roles, frequent enough to become tokens
BUILD_FILE = TOY_BUILD_FILE


PINNED_DIR = Path(__file__).parent / "pinned"  # builds committed with the code, so tests and the demo skip training


def toy_model_dir(name: str) -> Path:
    return models_dir() / name


def pinned_build_dir(name: str) -> Path:
    """Where the committed build of toy model `name` lies (it may not exist)."""
    return PINNED_DIR / name


def build_tokenizer(texts: list[str]) -> Any:
    """The OneVision special tokens and chat template over byte-level BPE trained on `texts`."""
    return ADAPTERS[FAMILY].tiny_tokenizer(corpus=[*CHAT_WORDS, *texts], vocab_size=VOCAB_SIZE)


def build_config(tokenizer: Any) -> Any:
    return ADAPTERS[FAMILY].tiny_config(tokenizer, tile_px=TILE_PX, patch_px=PATCH_PX, text_sizes=TEXT_SIZES,
                                       vision_sizes=VISION_SIZES, intermediate_size=FFN_KEYS, max_tiles_per_side=1)


def build_processor(tokenizer: Any, config: Any) -> Any:
    return ADAPTERS[FAMILY].build_processor(tokenizer, config)


def read_build(model_dir: Path) -> dict[str, Any] | None:
    """The build record (version, recipe, held-out accuracies) of a cached toy model, or None."""
    path = model_dir / BUILD_FILE
    return json.loads(path.read_text()) if path.is_file() else None
