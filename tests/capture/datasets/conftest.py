"""Helpers for the miniature data set layouts: images, masks in their real encodings, a tiny capture."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from PIL import Image


def voc_palette() -> list[int]:
    """The 256-colour palette of PASCAL VOC's and DAVIS's mask PNGs (VOCdevkit's labelcolormap: the bits of the
    index spread over R, G and B, most significant first): 0 black, 1 (128, 0, 0), 2 (0, 128, 0), ..."""
    palette = []
    for index in range(256):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


@pytest.fixture(scope="session")
def write_image() -> Callable[..., Path]:
    """`write_image(path, width, height)`: a seeded noise image in the format of the path's suffix."""

    def write(path: Path, width: int, height: int) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.RandomState(width * 1000 + height + len(path.name))
        Image.fromarray(rng.randint(0, 255, (height, width, 3), dtype=np.uint8)).save(path)
        return path

    return write


@pytest.fixture(scope="session")
def palette_png() -> Callable[[Path, np.ndarray], Path]:
    """`palette_png(path, ids)`: an indexed PNG whose pixel indices are `ids`, with the VOC / DAVIS palette."""

    def write(path: Path, ids: np.ndarray) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(np.asarray(ids, np.uint8), mode="P")
        image.putpalette(voc_palette())
        image.save(path)
        return path

    return write


@pytest.fixture(scope="session")
def capture_two() -> Callable[[str, Path, Path], xr.Dataset]:
    """`capture_two(dataset, root, out)`: tiny-llava-1.5 captures the first two records; the store, opened."""
    import store.reader
    from capture.options import CaptureOptions
    from capture.run import run_capture

    def capture(dataset: str, root: Path, out: Path) -> xr.Dataset:
        summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset=dataset, data_root=root, out=out, limit=2,
                                             progress=False))
        assert summary.captured == 2
        return store.reader.open(out)

    return capture
