"""Shared fixtures: an isolated cache home (tiny models, generated data) and captured stores."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One cache home per test session (inherited by CLI subprocesses), so tiny models and data are built by
# the code under test; VLM_TEST_CACHE_HOME reuses one across sessions.
os.environ["VLM_CACHE_HOME"] = os.environ.get("VLM_TEST_CACHE_HOME") or tempfile.mkdtemp(prefix="vlm-cache-")


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
    from capture.run import CaptureOptions, run_capture

    out = tmp_path_factory.mktemp("stores") / "full.zarr"
    run_capture(CaptureOptions(
        model="tiny-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, limit=6, out=out,
        batch_size=2, keys_prerope=True, ffn_dense_tokens="image,last", ffn_topk=5, progress=False,
    ))
    return out
