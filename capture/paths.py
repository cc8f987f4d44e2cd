"""Where the project keeps what it builds (tiny models, generated datasets)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_home() -> Path:
    """`$VLM_CACHE_HOME`, else `~/.cache/vlm-activation-cache`."""
    override = os.environ.get("VLM_CACHE_HOME")
    return Path(override) if override else Path.home() / ".cache" / "vlm-activation-cache"
