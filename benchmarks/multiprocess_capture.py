"""Capture with two processes sharing one store (`torchrun --nproc-per-node 2`, one thread each) against one process
with two threads and one process with one thread, on the same model and images, end to end (process start and model
loading included in every mode), with interleaved runs. Also compares the stores: ranks must reproduce a single
process with the same threads per process bit for bit (other thread counts may round bf16 matmuls differently).

Default model: the mid-sized OneVision in benchmarks/bench_model.py (Qwen2-0.5B text sizes, 1,524 tokens per sample,
bf16 on CPU), the default capture (hidden + K + V + FFN top-16).

Usage: python benchmarks/multiprocess_capture.py [--quick] [--samples 16] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from bench_model import bench_images, bench_model_dir
from common import REPO, append_results, command_line


def run(command: list[str], threads: int) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    started = time.perf_counter()
    subprocess.run(command, check=True, cwd=REPO, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def differing_arrays(first: Path, second: Path) -> list[str]:
    a, b = zarr.open_group(first, mode="r"), zarr.open_group(second, mode="r")
    return [name for name in a.array_keys()
            if not np.array_equal(a[name][...], b[name][...], equal_nan=a[name].dtype.kind == "f")]


def _verdict(differing: list[str]) -> str:
    if not differing:
        return "bit-identical"
    return f"differs in {', '.join(differing)} (the thread count changes how CPU kernels order floating-point sums)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 samples, 1 repeat (smoke test)")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        samples, repeats = (4, 1) if args.quick else (args.samples, args.repeats)
        model = "tiny-llava-ov" if args.quick else str(bench_model_dir())
        images = bench_images(Path(tmp) / "images", samples)
        common = ["-m", "capture", "--model", model, "--dataset", "folder", "--data-root", str(images),
                  "--batch-size", "2", "--no-progress"]
        one, single, two = Path(tmp) / "one.zarr", Path(tmp) / "single.zarr", Path(tmp) / "two.zarr"
        modes = {
            "1 process x 2 threads": ([sys.executable, *common, "--out", str(one)], 2, one),
            "1 process x 1 thread": ([sys.executable, *common, "--out", str(single)], 1, single),
            "2 processes x 1 thread (torchrun)": (
                [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", *common, "--out", str(two)], 1, two),
        }
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        for _ in range(repeats):  # interleaved: both modes see the same machine state
            for mode, (command, threads, out) in modes.items():
                shutil.rmtree(out, ignore_errors=True)
                times[mode].append(run(command, threads))
        same_threads = differing_arrays(single, two)
        other_threads = differing_arrays(one, two)
    base = min(times["1 process x 2 threads"])
    rows = [f"| mode | seconds (best of {repeats}) | all runs | speed-up over 1 process x 2 threads |",
            "|---|---|---|---|"]
    for mode, runs in times.items():
        rows.append(f"| {mode} | {min(runs):.1f} | {' / '.join(f'{t:.1f}' for t in runs)} | {base / min(runs):.2f} |")
    rows.append(f"\nModel {Path(model).name}, {samples} samples, 2 samples per shard (shards dealt round-robin to the "
                "ranks), bf16 on CPU, default capture (hidden + K + V + FFN top-16). The 2-rank store against 1 process x "
                f"1 thread: {_verdict(same_threads)}; against 1 process x 2 threads: {_verdict(other_threads)}.")
    append_results("Multi-process capture: 2 ranks vs 1 process",
                   command_line("multiprocess_capture.py", args, "samples", "repeats"), rows)


if __name__ == "__main__":
    sys.exit(main())
