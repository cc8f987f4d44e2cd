"""Capture time vs a bare forward pass, and bytes per sample, for the demo model and dataset.

Both are measured side by side in one run, over the same samples with the same preprocessing:
  bare:    load the model; per sample: load images, build the prompt, run the processor, model(**inputs)
  capture: run_capture(...) into a fresh store: the same, plus hooks, hidden states, KV cache, FFN top-k,
           the token table, store creation (with lens weights) and background writes
Each is repeated and the fastest repeat is kept. Results are appended to benchmarks/results.md.

Usage: python benchmarks/capture_overhead.py [--repeats 3] [--limit 12]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from capture.datasets import load_image, open_dataset  # noqa: E402
from capture.loading import load_model, resolve_model  # noqa: E402
from capture.prompts import DEFAULT_PROMPT, build_prompt  # noqa: E402
from capture.run import CaptureOptions, run_capture  # noqa: E402

RESULTS = Path(__file__).with_name("results.md")


def bare_forward_seconds(model_name: str, limit: int) -> float:
    started = time.perf_counter()
    loaded = load_model(resolve_model(model_name), "auto", "cpu")
    records = open_dataset("synthetic-coco", None, None, limit).records
    with torch.inference_mode():
        for record in records:
            images = [load_image(p) for p in record.image_paths]
            prompt = build_prompt(loaded.processor, "chat", DEFAULT_PROMPT, len(images))
            loaded.model(**loaded.adapter.processor_inputs(loaded.processor, prompt, images))
    return time.perf_counter() - started


def capture_seconds(model_name: str, limit: int, out: Path) -> tuple[float, int, int]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_capture(CaptureOptions(model=model_name, limit=limit, out=out, progress=False))
    return time.perf_counter() - started, summary.bytes_on_disk, summary.captured


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="tiny-llava-ov")
    parser.add_argument("--limit", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(2)
    bare_forward_seconds(args.model, args.limit)  # warm-up: builds the tiny model and the dataset
    with tempfile.TemporaryDirectory() as tmp:
        bare, captured = [], []
        for _ in range(args.repeats):  # interleaved so both see the same machine state
            bare.append(bare_forward_seconds(args.model, args.limit))
            captured.append(capture_seconds(args.model, args.limit, Path(tmp) / "bench.zarr"))
    best_bare = min(bare)
    capture_total, bytes_on_disk, n = min(captured)
    line = (
        f"| {datetime.now(UTC):%Y-%m-%d} | {args.model} | {n} | {best_bare:.2f} s | {capture_total:.2f} s | "
        f"{capture_total / best_bare:.2f}x | {bytes_on_disk / n / 1e3:.1f} kB |"
    )
    command = f"python benchmarks/capture_overhead.py --model {args.model} --limit {args.limit} --repeats {args.repeats}"
    if not RESULTS.exists():
        RESULTS.write_text(
            "# Benchmarks\n\n## Capture vs bare forward pass (CPU, 2 cores)\n\n"
            "Both include model loading, image decoding and preprocessing; capture adds hooks, KV cache and\n"
            "hidden-state extraction, the token table, store creation (with lens weights) and the writes.\n"
            "Command: `python benchmarks/capture_overhead.py --model MODEL --limit N --repeats R`.\n\n"
            "| date | model | samples | bare forward | capture | ratio | bytes/sample on disk |\n"
            "|---|---|---|---|---|---|---|\n"
        )
    with RESULTS.open("a") as results:
        results.write(f"{line}\n")
    print(line)
    print(f"(command: {command})")


if __name__ == "__main__":
    main()
