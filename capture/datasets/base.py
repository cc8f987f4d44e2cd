"""What every dataset adapter produces: a fixed, ordered list of records, and image loading that
turns a missing or corrupt file into a counted skip instead of a crash."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Record:
    """One sample to capture: its images, optional per-record text, and a JSON-able annotation reference."""

    sample_id: str
    image_paths: tuple[Path, ...]
    annotation: dict[str, Any] = field(default_factory=dict)
    text: str | None = None  # overrides --prompt for this record when set


@dataclass(frozen=True)
class Dataset:
    name: str
    root: Path
    split: str | None
    records: list[Record]


class ImageLoadError(Exception):
    """An image that cannot be used; the sample is skipped and counted."""


def load_image(path: Path) -> Image.Image:
    """Decode `path` fully into an RGB image; ImageLoadError (one line) if missing, unreadable or truncated."""
    try:
        with Image.open(path) as image:
            image.load()  # decode now: truncated files fail here, not inside the processor
            return image.convert("RGB")
    except FileNotFoundError:
        raise ImageLoadError(f"missing image {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageLoadError(f"corrupt image {path}: {error}") from None
