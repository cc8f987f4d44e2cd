"""Helpers of the real-parts benchmark: fp32 captures into the benchmark's work folder, interval formatting."""

from __future__ import annotations

import json
from pathlib import Path

import xarray as xr

import store.reader
from analyses.intervals import Interval

REAL = "dino-smollm2-llava"


def capture(out: Path, model: str = REAL, **options) -> xr.Dataset:
    """A fresh fp32 CPU capture into `out` (replaced), opened."""
    from capture.run import CaptureOptions, run_capture

    run_capture(CaptureOptions(model=model, out=out, dtype="fp32", device="cpu", progress=False, overwrite=True,
                               **options))
    return store.reader.open(out)


def write_manifest(path: Path, records: list[dict]) -> Path:
    """A `manifest` data set of `records` (one JSON object a line) at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def show(interval: Interval, digits: int = 3) -> str:
    """'estimate [low, high] (n=N)'."""
    return f"{interval.estimate:.{digits}f} [{interval.low:.{digits}f}, {interval.high:.{digits}f}] (n={interval.n})"
