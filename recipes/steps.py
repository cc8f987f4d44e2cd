"""The calls recipes chain: a capture into the recipe's folder, a command of `python -m analyses` /
`python -m interventions`, and reading back what they wrote."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from analyses.command import Command
from capture.errors import CaptureError
from capture.options import CaptureOptions
from capture.run import run_capture
from recipes.recipe import Context


def capture(context: Context, name: str, dataset: str, limit: int | None, **options: Any) -> Path:
    """Capture `limit` samples of `dataset` (its folder from the context) with the context's model into
    <out>/stores/<name>.zarr (resumed if a previous run of the same settings stopped); the store's path."""
    out = context.folder("stores") / f"{name}.zarr"
    started = time.perf_counter()
    summary = run_capture(CaptureOptions(model=context.model, dataset=dataset, data_root=context.data.get(dataset),
                                         limit=limit, out=out, dtype=context.dtype, device=context.device,
                                         progress=False, **options))
    if summary.captured == 0:
        raise CaptureError(f"capture {name}: no sample of {dataset} was captured ({summary.skipped} skipped)")
    print(f"captured {summary.captured} samples of {dataset} into {out} ({time.perf_counter() - started:.1f} s)")
    return out


def analyse(context: Context, command: Command, name: str, **options: Any) -> Path:
    """Run `command` with `options`, writing into <out>/<name>; that folder."""
    out = context.folder(name)
    started = time.perf_counter()
    context.written += command(out=out, **options)
    print(f"{command.name} -> {out} ({time.perf_counter() - started:.1f} s)")
    return out


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def percent(value: float | None) -> float | None:
    """A rate (0-1) as a percentage, as the papers print them."""
    return None if value is None else 100.0 * value
