"""Where the project keeps what it builds (tiny models, generated datasets)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_home() -> Path:
    """`$VLM_CACHE_HOME`, else `~/.cache/vlm-activation-cache`."""
    override = os.environ.get("VLM_CACHE_HOME")
    return Path(override) if override else Path.home() / ".cache" / "vlm-activation-cache"


def models_dir() -> Path:
    """Where tiny, toy and assembled models are built: `<cache home>/models/<name>`."""
    return cache_home() / "models"


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """A fresh sibling folder of `target` to build into; when the block succeeds it replaces `target` whole,
    so a half-built model or dataset never sits at `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
