"""Capture at a 7B model's scale on the device, in one command: `python -m benchmarks gpu` (under 8 minutes).

A llava-ov-7b-shaped model (the family's reference config: 28 layers, d_model 3584, FFN 18944, 152k vocabulary,
SigLIP-400M; the tokenizer is the family's stand-in) with random bf16 weights initialised directly on the device
(no download), synthetic 640x480 noise images, N sized to the free disk. Measured side by side in one run:
  bare        per sample: decode, prompt, processor, model(**inputs) with last-position logits (as capture)
  hkv         capture of hidden + K + V, every layer and token (--ffn-topk 0), overlapped device path
  hkv+topk    the same plus FFN top-16 (computed on the device)
  hkv, sync   hkv with --no-overlap (each sample's copies right after its forward pass)
and the raw write rate of the same disk (64 MiB blocks, fsync) and device-to-host copy rates. Capture GB/s counts
the store's bytes over the capture's time (the page cache absorbs what the disk has not taken yet) and over the
capture plus `sync` (everything on disk). `--tiny`: the tiny OneVision config on CPU in fp32 (CI's smoke test).

Usage: python -m benchmarks gpu [--samples 32] [--workdir DIR]    (or python benchmarks/gpu_capture.py --tiny)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from common import append_results, peak_rss_mb
from PIL import Image

from capture.datasets import load_image, open_dataset  # noqa: E402
from capture.loading import LoadedModel, ResolvedModel  # noqa: E402
from capture.options import CaptureOptions  # noqa: E402
from capture.prompts import DEFAULT_PROMPT, build_prompt  # noqa: E402
from capture.registry import parse_model_name  # noqa: E402
from capture.run import run_capture  # noqa: E402
from capture.sizing import model_front_end  # noqa: E402
from store.info import bytes_on_disk  # noqa: E402
from store.schema import LENS_GROUP  # noqa: E402

MODES = {"hkv": {"ffn_topk": 0}, "hkv+topk": {"ffn_topk": 16}, "hkv, sync": {"ffn_topk": 0, "overlap": False}}
WIDTH, HEIGHT = 640, 480
DISK_SHARE = 0.5  # of the free disk one capture's store may take (each store is deleted after its run)
BLOCK = 64 * 2**20


@dataclass
class Run:
    seconds: float
    tokens: int
    bytes_written: int = 0  # the whole store
    sync_seconds: float = 0.0
    lens_bytes: int = 0  # of it, the lens group (model weights, written once per store)


def random_model(tiny: bool, device: torch.device, folder: Path) -> LoadedModel:
    """The model with random weights made on `device` (bf16 on a GPU, fp32 on CPU); its config saved to `folder`
    (no weights) so the store's provenance names a real directory."""
    from transformers import AutoModelForImageTextToText

    front, source = model_front_end("tiny-llava-ov" if tiny else "llava-ov-7b")
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForImageTextToText.from_config(front.config, dtype=dtype)
    model = model.to(device).eval()  # a no-op where the parameters were made on the device, as intended
    front.config.save_pretrained(folder)
    resolved = ResolvedModel(parse_model_name(str(folder)), folder, f"random-init ({source})")
    return LoadedModel(config=front.config, processor=front.processor, adapter=front.adapter, resolved=resolved,
                       dtype=dtype, device=device, model=model)


def synthetic_images(folder: Path, count: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    return folder


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare(loaded: LoadedModel, images: Path) -> Run:
    """Preprocessing and forward passes alone, as capture runs them."""
    tokens, started = 0, time.perf_counter()
    with torch.inference_mode():
        for record in open_dataset("folder", images, None, None).records:
            pictures = [load_image(p) for p in record.image_paths]
            prompt = build_prompt(loaded.processor, "chat", DEFAULT_PROMPT, len(pictures))
            inputs = loaded.model_inputs(loaded.adapter.processor_inputs(loaded.processor, prompt, pictures))
            tokens += int(inputs["input_ids"].shape[1])
            loaded.model(**inputs, logits_to_keep=1)
        synchronize(loaded.device)
    return Run(time.perf_counter() - started, tokens)


def capture(loaded: LoadedModel, images: Path, out: Path, options: dict) -> Run:
    """One capture into a fresh store at `out` (deleted afterwards), then `sync` timed apart."""
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    summary = run_capture(CaptureOptions(model=str(loaded.resolved.local_dir), dataset="folder", data_root=images,
                                         out=out, progress=False, **options), model=loaded)
    seconds = time.perf_counter() - started
    os.sync()
    run = Run(seconds, summary.tokens, summary.bytes_on_disk, time.perf_counter() - started - seconds,
              bytes_on_disk(out / LENS_GROUP))
    if summary.captured != len(list(images.iterdir())) or summary.pending_shards:
        raise RuntimeError(f"capture into {out} is incomplete: {summary.captured} samples captured")
    shutil.rmtree(out)
    return run


def disk_write_rate(folder: Path, nbytes: int) -> float:
    """GB/s of writing `nbytes` in 64 MiB blocks to a file in `folder`, fsync included."""
    block = np.random.default_rng(1).integers(0, 255, BLOCK, dtype=np.uint8).tobytes()
    path = folder / "raw-write.bin"
    started = time.perf_counter()
    with path.open("wb") as out:
        for _ in range(max(1, nbytes // BLOCK)):
            out.write(block)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    written = path.stat().st_size
    path.unlink()
    return written / seconds / 1e9


def device_to_host_rates(device: torch.device, nbytes: int) -> dict[str, float]:
    """GB/s of one `nbytes` copy from the device into pinned and pageable host memory (best of 3); on CPU a plain
    host copy."""
    source = torch.empty(nbytes, dtype=torch.uint8, device=device).fill_(1)
    targets = {"pinned": torch.empty(nbytes, dtype=torch.uint8, pin_memory=device.type == "cuda"),
               "pageable": torch.empty(nbytes, dtype=torch.uint8)}
    rates = {}
    for name, target in targets.items():
        best = float("inf")
        for _ in range(3):
            synchronize(device)
            started = time.perf_counter()
            target.copy_(source, non_blocking=name == "pinned")
            synchronize(device)
            best = min(best, time.perf_counter() - started)
        rates[name] = nbytes / best / 1e9
    return rates


def sample_count(requested: int, workdir: Path, bytes_per_sample: int) -> int:
    """`requested`, or fewer so that one store fits `DISK_SHARE` of the free disk (at least 2)."""
    free = shutil.disk_usage(workdir).free
    return max(2, min(requested, int(free * DISK_SHARE // max(bytes_per_sample, 1))))


def measure(loaded: LoadedModel, workdir: Path, requested: int) -> tuple[int, dict[str, Run], dict[str, float]]:
    """Warm-up (sizes a sample), then bare and every capture mode on the same N images; disk and copy rates."""
    warm = capture(loaded, synthetic_images(workdir / "warm", 1), workdir / "warm.zarr", MODES["hkv+topk"])
    bare(loaded, workdir / "warm")
    n = sample_count(requested, workdir, warm.bytes_written - warm.lens_bytes)
    images = synthetic_images(workdir / "images", n)
    runs = {"bare": bare(loaded, images)}
    for mode, options in MODES.items():
        runs[mode] = capture(loaded, images, workdir / "store.zarr", options)
    rates = {"disk": disk_write_rate(workdir, min(4 * 2**30, runs["hkv"].bytes_written))}
    rates.update(device_to_host_rates(loaded.device, 2**30 if loaded.device.type == "cuda" else 2**26))
    return n, runs, rates


def report(loaded: LoadedModel, n: int, runs: dict[str, Run], rates: dict[str, float], command: str,
           load_seconds: float) -> None:
    base = runs["bare"]
    rows = ["| run | tokens | seconds | tokens/s | ratio to bare | MB written | GB/s (to page cache) | GB/s (with sync) |",
            "|---|---|---|---|---|---|---|---|",
            f"| bare forward | {base.tokens} | {base.seconds:.2f} | {base.tokens / base.seconds:,.0f} | 1.00 | | | |"]
    for mode in MODES:
        run = runs[mode]
        gb = run.bytes_written / 1e9
        rows.append(f"| {mode} | {run.tokens} | {run.seconds:.2f} | {run.tokens / run.seconds:,.0f} | "
                    f"{run.seconds / base.seconds:.2f} | {run.bytes_written / 1e6:,.1f} | {gb / run.seconds:.3f} | "
                    f"{gb / (run.seconds + run.sync_seconds):.3f} |")
    text = loaded.adapter.text_config(loaded.config)
    peak_device = torch.cuda.max_memory_allocated(loaded.device) / 2**30 if loaded.device.type == "cuda" else 0.0
    where = torch.cuda.get_device_name(loaded.device) if loaded.device.type == "cuda" else "CPU"
    rows.append(
        f"\n{where}; model {loaded.resolved.revision}: {text.num_hidden_layers} layers, d_model {text.hidden_size}, "
        f"FFN {text.intermediate_size}, {loaded.logical_dtype}, random weights made on the device in "
        f"{load_seconds:.0f} s. {n} samples of {WIDTH}x{HEIGHT} ({base.tokens // n:,} tokens each), 8 per shard. "
        f"Raw disk write {rates['disk']:.2f} GB/s (64 MiB blocks, fsync); device-to-host {rates['pinned']:.1f} GB/s "
        f"pinned, {rates['pageable']:.1f} GB/s pageable. Peak device memory {peak_device:.1f} GiB, peak host RSS "
        f"{peak_rss_mb() / 1024:.1f} GiB.")
    title = "Device capture at llava-ov-7b scale" + (" (tiny config, CPU smoke test)" if "tiny" in command else "")
    append_results(title, command, rows)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks gpu")
    parser.add_argument("--tiny", action="store_true", help="the tiny config on CPU in fp32 (smoke test)")
    parser.add_argument("--samples", type=int, default=None, help="images (default 32, tiny 3), fewer if the disk "
                                                                   "is short")
    parser.add_argument("--workdir", type=Path, default=None, help="where stores go (default: a temporary folder)")
    args = parser.parse_args(argv)
    if not args.tiny and not torch.cuda.is_available():
        raise SystemExit("python -m benchmarks gpu needs a CUDA device; --tiny runs the CPU smoke test")
    device = torch.device("cpu" if args.tiny else "cuda")
    requested = args.samples or (3 if args.tiny else 32)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        started = time.perf_counter()
        loaded = random_model(args.tiny, device, Path(tmp) / "model")
        synchronize(device)
        load_seconds = time.perf_counter() - started
        n, runs, rates = measure(loaded, Path(tmp), requested)
    command = "python -m benchmarks gpu" + (" --tiny" if args.tiny else "") + f" --samples {requested}"
    report(loaded, n, runs, rates, command, load_seconds)


if __name__ == "__main__":
    sys.exit(main())
