"""A mid-sized seeded model of the OneVision architecture for timing: Qwen2-0.5B text sizes (hidden 896,
24 layers, 14 query / 2 KV heads, FFN 4864) and a 4-layer SigLIP at 384 px (27 x 27 = 729 patches per tile).
Random weights in bf16, built once under $VLM_CACHE_HOME/models/ and loaded like any local checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import common  # noqa: F401 (puts this checkout first on sys.path, before capture is imported)
import numpy as np
import torch
from PIL import Image
from transformers import AutoModelForImageTextToText, LlavaOnevisionConfig, Qwen2Config, SiglipVisionConfig

from capture.families import ADAPTERS
from capture.paths import cache_home, staged_directory

NAME = "bench-llava-ov-0.5b"
VERSION = 1
TILE = 384


def bench_model_dir() -> Path:
    """The checkpoint directory, built on first use (about 20 s, 0.8 GB)."""
    out = cache_home() / "models" / NAME
    marker = out / "bench_build.json"
    if marker.is_file() and json.loads(marker.read_text()).get("version") == VERSION:
        return out
    adapter = ADAPTERS["llava_onevision"]
    tokenizer = adapter.tiny_tokenizer()
    text = Qwen2Config(vocab_size=len(tokenizer), hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                       num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, tie_word_embeddings=False, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.pad_token_id)
    vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=4, num_attention_heads=16,
                                image_size=TILE, patch_size=14, vision_use_head=False)
    config = LlavaOnevisionConfig(
        text_config=text, vision_config=vision, image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        video_token_index=tokenizer.convert_tokens_to_ids("<video>"), vision_feature_select_strategy="full",
        vision_feature_layer=-1, image_grid_pinpoints=[[TILE, TILE]], vision_aspect_ratio="anyres_max_9",
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    model = AutoModelForImageTextToText.from_config(config).to(torch.bfloat16).eval()
    model.config.dtype = torch.bfloat16
    processor = adapter.build_processor(tokenizer, config)
    with staged_directory(out) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "bench_build.json").write_text(json.dumps({"name": NAME, "version": VERSION}) + "\n")
    return out


def bench_images(folder: Path, count: int) -> Path:
    """`count` seeded 384 x 384 noise images (one tile: 729 base + 27 x 28 grid tokens each)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        path = folder / f"{i:03d}.png"
        if not path.exists():
            Image.fromarray(rng.integers(0, 255, (TILE, TILE, 3), dtype=np.uint8)).save(path)
    return folder
