"""Fixtures for the family adapter tests: tiny models (fp32, loaded once) and images of known geometry."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image

from capture.loading import LoadedModel, load_model, resolve_model


@pytest.fixture(scope="session")
def tiny_model(cache_home) -> Callable[[str], LoadedModel]:
    """`tiny_model(name)`: the tiny model `name` in fp32 on CPU, loaded once per session."""
    loaded: dict[str, LoadedModel] = {}

    def get(name: str) -> LoadedModel:
        if name not in loaded:
            loaded[name] = load_model(resolve_model(name), "fp32", "cpu")
        return loaded[name]

    return get


@pytest.fixture(scope="session")
def noise_image() -> Callable[[int, int], Image.Image]:
    def make(width: int, height: int) -> Image.Image:
        pixels = np.random.RandomState(width * height).randint(0, 255, (height, width, 3), dtype=np.uint8)
        return Image.fromarray(pixels)

    return make


@pytest.fixture(scope="session")
def coordinate_image() -> Callable[[int, int], Image.Image]:
    """An image whose red channel is x / width and green channel y / height (x 255), blue 128."""

    def make(width: int, height: int) -> Image.Image:
        x = (np.arange(width) + 0.5) / width
        y = (np.arange(height) + 0.5) / height
        pixels = np.zeros((height, width, 3))
        pixels[..., 0], pixels[..., 1], pixels[..., 2] = x[None, :] * 255, y[:, None] * 255, 128
        return Image.fromarray(np.round(pixels).astype(np.uint8))

    return make
