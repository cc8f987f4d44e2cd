"""Sizing from configs alone: token counts of the released checkpoints and of the tiny models."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.families import ADAPTERS
from capture.options import CaptureOptions
from capture.registry import ALIASES, TINY_MODELS
from capture.run import run_capture
from capture.sizing import main, sample_size

# Image tokens of a 640x480 image, measured with the released processors (../shared/PLATFORM.md).
MEASURED_640x480 = {"llava-1.5-7b": 576, "llama3-llava-next-8b": 2340, "llava-ov-7b": 2929, "qwen2.5-vl-7b": 391}


def test_every_alias_has_a_reference_config_in_its_family():
    for alias, entry in ALIASES.items():
        assert alias in ADAPTERS[entry.family].reference_configs, alias
    assert sum(len(adapter.reference_configs) for adapter in ADAPTERS.values()) == len(ALIASES)


@pytest.mark.parametrize("alias", sorted(MEASURED_640x480))
def test_reference_token_counts_match_the_released_processors(alias, monkeypatch, tmp_path):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path))  # no cached config.json
    size = sample_size(alias, 480, 640)
    assert size.config_source == "reference config"
    assert size.image_tokens == MEASURED_640x480[alias]


def test_bytes_are_the_store_arrays():
    size = sample_size("llava-ov-7b", 480, 640)
    tokens, layers, d_model = 2929, 28, 3584
    assert size.bytes_hidden == (layers + 1) * tokens * d_model * 2  # every layer's input plus the raw last output
    assert size.bytes_keys_values == 2 * layers * 4 * tokens * 128 * 2
    assert size.bytes_ffn_topk == layers * tokens * 16 * (4 + 2)
    assert size.bytes_ffn_dense == layers * tokens * 18944 * 2


@pytest.mark.parametrize("model", sorted(TINY_MODELS))
def test_tiny_sizes_match_a_capture(model, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.RandomState(0).randint(0, 255, (480, 640, 3), dtype=np.uint8)).save(images / "a.png")
    out = tmp_path / "s.zarr"
    run_capture(CaptureOptions(model=model, dataset="folder", data_root=images, out=out, tokens="image", progress=False))
    ds = store.reader.open(out)
    size = sample_size(model, 480, 640)
    assert int(ds.n_tokens[0]) == size.image_tokens
    n = size.image_tokens
    assert ds.hidden.isel(sample=0, token=slice(0, n)).nbytes == size.bytes_hidden


def test_cli_table(capsys):
    assert main(["--models", "tiny-llava-1.5,llava-1.5-7b", "--image-size", "640x480"]) == 0
    table = capsys.readouterr().out
    assert "| llava-1.5-7b | reference config | 32 x 32 x 128 | 576 |" in table
    assert main(["--image-size", "640"]) == 2
