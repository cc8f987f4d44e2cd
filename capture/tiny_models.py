"""Build tiny, seeded, random-weight models of the real architectures (for tests and the demo).

Each build is byte-identical: the RNG is seeded before construction and weights are saved with
`save_pretrained`. The result loads back through the same code path as a real checkpoint.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from capture.families import ADAPTERS
from capture.paths import models_dir, staged_directory

TINY_BUILD_VERSION = 1  # bump when a tiny config or tokenizer changes
SEED = 0


def tiny_model_dir(name: str) -> Path:
    return models_dir() / name


def build_tiny_model(name: str, family: str, out_dir: Path) -> Path:
    """Construct, seed and save the tiny model `name` of `family` into `out_dir` (replaced whole)."""
    from transformers import AutoModelForImageTextToText

    adapter = ADAPTERS[family]
    tokenizer = adapter.tiny_tokenizer()
    config = adapter.tiny_config(tokenizer)
    torch.manual_seed(SEED)
    model = AutoModelForImageTextToText.from_config(config).to(torch.bfloat16).eval()
    model.config.dtype = torch.bfloat16  # real checkpoints are bf16; "auto" picks it up
    processor = adapter.tiny_processor(tokenizer, config)

    with staged_directory(out_dir) as staging:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        (staging / "tiny_build.json").write_text(
            json.dumps({"name": name, "family": family, "version": TINY_BUILD_VERSION, "seed": SEED}) + "\n"
        )
    return out_dir


def ensure_tiny_model(name: str, family: str) -> Path:
    """The directory of tiny model `name`, building it if missing or built by an older version."""
    out_dir = tiny_model_dir(name)
    marker = out_dir / "tiny_build.json"
    if marker.is_file() and json.loads(marker.read_text()).get("version") == TINY_BUILD_VERSION:
        return out_dir
    return build_tiny_model(name, family, out_dir)
