"""Capture cost against a bare forward pass, measured side by side with interleaved runs.

Modes, on the same model and samples, each end to end (model loading included in every mode alike):
  bare       load the model; per sample: decode the image, build the prompt, run the processor, model(**inputs)
             with last-position logits only (as capture)
  hkv        capture hidden states + K + V of all layers and tokens, written to a store (--ffn-topk 0)
  hkv, zstd  the same with zstd-1 compression of the activation arrays (--compression zstd)
  hkv+topk   the same plus FFN top-16 coefficients (the default capture)
  hkv+dense  the same plus dense FFN coefficients of every token
Default model: the mid-sized OneVision in benchmarks/bench_model.py (Qwen2-0.5B text sizes, 4-layer SigLIP,
1,524 tokens per sample, bf16 on CPU). Targets: hkv <= 1.10 x bare, hkv+topk <= 1.20 x bare.

Usage: python benchmarks/capture_overhead.py [--quick] [--samples 12] [--repeats 3] [--dtype auto] [--profile]
(`--dtype auto` on a CPU without native bf16 computes fp32, see capture/device.py; `--profile`: also where one
hkv+topk capture's time goes, torch ops by self CPU time.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_model import bench_images, bench_model_dir
from common import append_results, command_line, peak_rss_mb

from capture.datasets import load_image, open_dataset  # noqa: E402
from capture.loading import load_model, resolve_model  # noqa: E402
from capture.options import CaptureOptions  # noqa: E402
from capture.prompts import DEFAULT_PROMPT, build_prompt  # noqa: E402
from capture.run import run_capture  # noqa: E402
from store.schema import TokenSet  # noqa: E402

MODES = {
    "hkv": {"ffn_topk": 0},
    "hkv, zstd": {"ffn_topk": 0, "compression": "zstd"},
    "hkv+topk": {"ffn_topk": 16},
    "hkv+dense": {"ffn_topk": 16, "ffn_dense_tokens": TokenSet.ALL.value},
}
TARGETS = {"hkv": 1.10, "hkv+topk": 1.20}


def bare(model: str, images: Path, dtype: str) -> float:
    started = time.perf_counter()
    loaded = load_model(resolve_model(model), dtype, "cpu")
    with torch.inference_mode():
        for record in open_dataset("folder", images, None, None).records:
            picture = [load_image(p) for p in record.image_paths]
            prompt = build_prompt(loaded.processor, "chat", DEFAULT_PROMPT, len(picture))
            # logits of the last position only, as capture computes them (full logits would be a 152k-wide matmul
            # per token that capture never does)
            loaded.model(**loaded.adapter.processor_inputs(loaded.processor, prompt, picture), logits_to_keep=1)
    return time.perf_counter() - started


def capture(model: str, images: Path, out: Path, options: dict) -> tuple[float, int, int]:
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_capture(CaptureOptions(model=model, dataset="folder", data_root=images, out=out, progress=False,
                                         batch_size=2, **options))
    return time.perf_counter() - started, summary.bytes_on_disk, summary.captured


def profile(model: str, images: Path, dtype: str) -> list[str]:
    """Torch ops of one hkv+topk capture by self CPU time (torch.profiler), as a results section's lines."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with tempfile.TemporaryDirectory() as tmp, torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds, _, n = capture(model, images, Path(tmp) / "profiled.zarr", {**MODES["hkv+topk"], "dtype": dtype})
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    topk = sum(e.self_cpu_time_total for e in events if e.key == "aten::topk") / 1e6
    table = events.table(sort_by="self_cpu_time_total", row_limit=12, max_name_column_width=40)
    return [f"One hkv+topk capture of {n} samples under torch.profiler: {seconds:.1f} s wall, {total:.1f} s of op "
            f"self CPU time, of which aten::topk (the FFN top-16, {MODES['hkv+topk']['ffn_topk']} of each layer's "
            f"coefficients) {topk:.2f} s ({topk / max(total, 1e-9):.1%}).", "", "```", table.rstrip(), "```"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny model, 2 samples, 1 repeat (smoke test)")
    parser.add_argument("--samples", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp32"], help="compute dtype of every mode")
    parser.add_argument("--profile", action="store_true", help="also profile one hkv+topk capture (torch.profiler)")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as tmp:
        if args.quick:
            model, images, repeats = "tiny-llava-ov", bench_images(Path(tmp) / "images", 2), 1
        else:
            model, images, repeats = str(bench_model_dir()), bench_images(Path(tmp) / "images", args.samples), args.repeats
        bare(model, images, args.dtype)  # warm-up: page cache, lazy imports
        times: dict[str, list[float]] = {"bare": [], **{m: [] for m in MODES}}
        sizes: dict[str, tuple[int, int]] = {}
        for _ in range(repeats):  # interleaved: every mode sees the same machine state
            times["bare"].append(bare(model, images, args.dtype))
            for mode, options in MODES.items():
                seconds, size, n = capture(model, images, Path(tmp) / f"{mode}.zarr", {**options, "dtype": args.dtype})
                times[mode].append(seconds)
                sizes[mode] = (size, n)
        profiled = profile(model, images, args.dtype) if args.profile else []
    base = min(times["bare"])
    rows = [f"| mode | seconds (best of {repeats}) | all runs | ratio to bare | target | MB on disk per sample |",
            "|---|---|---|---|---|---|",
            f"| bare forward | {base:.2f} | {' / '.join(f'{t:.1f}' for t in times['bare'])} | 1.00 | | |"]
    for mode in MODES:
        best = min(times[mode])
        target = TARGETS.get(mode)
        verdict = "" if target is None else f"<= {target:.2f} {'met' if best / base <= target else 'MISSED'}"
        size, n = sizes[mode]
        runs = " / ".join(f"{t:.1f}" for t in times[mode])
        rows.append(f"| {mode} | {best:.2f} | {runs} | {best / base:.2f} | {verdict} | {size / max(n, 1) / 1e6:.1f} |")
    rows.append(f"\nModel {Path(model).name}, {sizes['hkv'][1]} samples, 2 samples per shard, --dtype {args.dtype} "
                f"on CPU, 2 threads, load average {os.getloadavg()[0]:.1f} at the end. Peak RSS {peak_rss_mb():,.0f} MB.")
    rows += ["", *profiled] if profiled else []
    append_results("Capture overhead vs bare forward",
                   command_line("capture_overhead.py", args, "samples", "repeats", "dtype") +
                   (" --profile" if args.profile else ""), rows)


if __name__ == "__main__":
    sys.exit(main())
