"""Tiny models are byte-identical on every build and load through the real loading path."""

from __future__ import annotations

import hashlib

import pytest
import torch

from capture.loading import load_model, resolve_model
from capture.registry import TINY_MODELS
from capture.tiny_models import build_tiny_model


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("name", sorted(TINY_MODELS))
def test_builds_are_byte_identical(tmp_path, name):
    first = build_tiny_model(name, TINY_MODELS[name], tmp_path / "a")
    second = build_tiny_model(name, TINY_MODELS[name], tmp_path / "b")
    assert "model.safetensors" in _digest(first)
    assert _digest(first) == _digest(second)


def test_tiny_model_loads_like_a_real_checkpoint(cache_home):
    resolved = resolve_model("tiny-llava-ov")
    assert resolved.local_dir.is_relative_to(cache_home)
    loaded = load_model(resolved, "auto", "cpu")
    assert loaded.dtype == torch.bfloat16  # "auto" = the checkpoint's dtype
    assert loaded.model.config.model_type == "llava_onevision"
    text = loaded.adapter.text_config(loaded.config)
    assert (text.num_attention_heads, text.num_key_value_heads, text.num_hidden_layers) == (4, 2, 2)
    assert loaded.processor.tokenizer.decode(loaded.processor.tokenizer("héllo <image>")["input_ids"]) == "héllo <image>"
    # same path for a local directory
    assert resolve_model(str(resolved.local_dir)).revision == "local"
