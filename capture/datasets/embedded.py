"""Data sets released as parquet files with the images inside (Hugging Face `Image` columns, each cell
{"bytes", "path"}): the rows, and each image written once, byte for byte, into the cache under a stable name, so
that records point at image files as every other reader's do."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from PIL import Image, UnidentifiedImageError

from capture.datasets.base import IMAGE_SUFFIXES
from capture.errors import CaptureError
from capture.paths import cache_home

FORMAT_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


def read_parquet_rows(path: Path, dataset: str, required: tuple[str, ...]) -> list[dict[str, Any]]:
    """The rows of a parquet file as dicts; CaptureError if it is unreadable or lacks a `required` column."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise CaptureError(f"{dataset}: reading {path} needs pyarrow (pip install pyarrow)") from None
    try:
        table = pq.read_table(path)
    except (OSError, ValueError, pa.ArrowException) as error:
        raise CaptureError(f"{dataset}: {path} is not a readable parquet file ({error})") from None
    missing = [column for column in required if column not in table.column_names]
    if missing:
        raise CaptureError(f"{dataset}: {path} has no column {missing[0]!r} (columns: {', '.join(table.column_names)})")
    return table.to_pylist()


def image_cache(dataset: str, source: Path) -> Path:
    """The cache folder for images taken out of the files under `source` (one folder per source location)."""
    digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:12]
    return cache_home() / "datasets" / f"{dataset}-images" / digest


def relative_name(name: str) -> Path:
    """`name` (a path recorded in a data set) as a relative path that stays inside the folder it is joined to."""
    return Path(*[part for part in PurePosixPath(name.replace("\\", "/")).parts if part not in ("/", "..", ".")])


def save_embedded_image(cell: Any, stem: Path, where: str) -> Path:
    """Write the image of an `Image` cell ({"bytes", "path"} or raw bytes) to `stem` + the suffix of its format.
    The bytes are kept as they are (bytes PIL cannot read keep their recorded suffix, or .bin; capture then skips
    that sample as corrupt); an existing file with the same bytes is left alone. `where` names the cell in errors."""
    data = cell.get("bytes") if isinstance(cell, dict) else cell
    if not isinstance(data, bytes | bytearray) or not data:
        raise CaptureError(f"{where} holds no image bytes")
    target = stem.with_name(stem.name + _suffix(bytes(data), cell.get("path") if isinstance(cell, dict) else None))
    if target.is_file() and target.read_bytes() == data:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(staging, target)  # atomic: a reader never sees half an image
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
    return target


def _suffix(data: bytes, path: str | None) -> str:
    """The file suffix of the image format in `data` (read from its header), else of its recorded path."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.format in FORMAT_SUFFIXES:
                return FORMAT_SUFFIXES[image.format]
    except (UnidentifiedImageError, OSError):
        pass
    suffix = Path(path).suffix.lower() if path else ""
    return suffix if suffix in IMAGE_SUFFIXES else ".bin"
