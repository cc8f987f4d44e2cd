"""Out-of-core analysis: a store at least as large as this machine's RAM, written through the real writer (no model),
then the key-variance analysis and a per-head correspondence sweep over 1/4, 1/2 and all of its samples.

Each analysis runs in its own process (its peak RSS is its own) after the page cache is dropped, and is compared
with a raw sequential read of the same shard files, also from a cold cache. The store has planted answers (keys
and values of the first half of the layers are the same positional vectors in every sample), which each run checks.

Usage: python benchmarks/out_of_core.py [--quick] [--gib N] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import REPO, append_results, command_line, peak_rss_mb

from analyses import correspondence, variance
from store import reader, schema
from store.testing import IMAGE_SIZE, PlantedStore, planted_layers, synthetic_plan, write_synthetic_store

TOKENS = 1524  # OneVision-0.5B at 384 x 384: 729 base tokens and the anyres grid
FRACTIONS = (0.25, 0.5, 1.0)
KEYPOINTS_PER_PAIR = 64


def drop_page_cache() -> bool:
    """Empty the page cache so that reads come from disk (needs root); False where that is not allowed."""
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
        return True
    except OSError:
        return False


def ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def touched_files(path: Path, array: str, n_samples: int, batch: int, token_blocks: int) -> list[Path]:
    """Shard files of `array` holding the first `n_samples` samples and the first `token_blocks` token blocks
    (shards span one batch of samples, one token block and everything else)."""
    files = []
    for shard in range(-(-n_samples // batch)):
        for block in range(token_blocks):
            key = [shard] + [block if d == schema.TOKEN else 0 for d in schema.ACTIVATION_DIMS[array][1:]]
            files.append(path / array / "c" / Path(*map(str, key)))
    return files


def raw_read_seconds(files: list[Path]) -> tuple[float, int]:
    """Sequential reads of `files` in 16 MB blocks: seconds and bytes."""
    started, nbytes = time.perf_counter(), 0
    for file in files:
        with open(file, "rb", buffering=0) as handle:
            while block := handle.read(16 << 20):
                nbytes += len(block)
    return time.perf_counter() - started, nbytes


def run_variance(path: Path, n_samples: int) -> dict:
    ds = reader.open(path).isel(sample=slice(0, n_samples))
    result = variance.key_variance(ds, schema.KEYS).compute()
    keys = variance.input_agnostic_keys(result, variance.choose_threshold(result.values))
    every = keys[variance.ALL_FLAGGED]
    flagged = sorted({layer for layer, _ in every})
    return {"correct": flagged == planted_layers(ds.layer.values) and len(every) == len(flagged) * ds.sizes[schema.KV_HEAD]}


def keypoint_pairs(n_samples: int) -> list[correspondence.KeypointPair]:
    """Sample 2i's image matched to sample 2i+1's at the same pixels (the planted values make them correspond)."""
    rng = np.random.default_rng(0)
    pairs = []
    for first in range(0, n_samples - 1, 2):
        points = rng.uniform(0, IMAGE_SIZE, size=(KEYPOINTS_PER_PAIR, 2))
        pairs.append(correspondence.KeypointPair((first, 0), (first + 1, 0), points, points))
    return pairs


def run_correspondence(path: Path, n_samples: int) -> dict:
    ds = reader.open(path)
    pck = correspondence.semantic_correspondence(ds, keypoint_pairs(n_samples), schema.VALUES, part="base").pck
    planted = pck.sel(layer=planted_layers(ds.layer.values))
    others = pck.drop_sel(layer=planted_layers(ds.layer.values))
    return {"correct": bool(planted.min() > 0.95 and others.max() < 0.5)}


ANALYSES = {"variance": (run_variance, schema.KEYS), "correspondence": (run_correspondence, schema.VALUES)}


def measure(path: Path, analysis: str, n_samples: int) -> dict:
    """Run one analysis in a fresh process: seconds, its peak RSS, whether it found the planted answer."""
    command = [sys.executable, __file__, "--run", analysis, "--store", str(path), "--samples", str(n_samples)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode:
        raise SystemExit(f"{analysis} on {n_samples} samples failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(analysis: str, path: Path, n_samples: int) -> None:
    imported = peak_rss_mb()  # Python, numpy, dask, xarray, faiss, tensorstore
    started = time.perf_counter()
    outcome = ANALYSES[analysis][0](path, n_samples)
    print(json.dumps({**outcome, "seconds": time.perf_counter() - started, "peak_rss_mb": peak_rss_mb(),
                      "imports_rss_mb": imported}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a 0.3 GiB store (smoke test)")
    parser.add_argument("--gib", type=float, help="store size in GiB (default: this machine's RAM)")
    parser.add_argument("--keep", type=Path, help="write the store here and keep it (default: a temporary folder)")
    parser.add_argument("--run", choices=sorted(ANALYSES), help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        return child(args.run, args.store, args.samples)

    target = 0.3 * 2**30 if args.quick else (args.gib * 2**30 if args.gib else ram_bytes())
    probe = synthetic_plan(4)
    planted = PlantedStore(probe, TOKENS)
    per_sample = planted.payload(0).nbytes / probe.batch_size
    n_samples = int(-(-target // (per_sample * 4 * probe.batch_size))) * 4 * probe.batch_size  # quarters of whole shards
    plan = synthetic_plan(n_samples)
    folder = args.keep or Path(tempfile.mkdtemp(dir=REPO))  # the repository's disk, like real stores
    path = folder / "out_of_core.zarr"
    try:
        started = time.perf_counter()
        written = write_synthetic_store(path, plan, TOKENS, planted=PlantedStore(plan, TOKENS))
        os.sync()
        write_seconds = time.perf_counter() - started
        on_disk = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        cold = not args.quick and drop_page_cache()  # the smoke test leaves the machine's cache alone
        drop = drop_page_cache if cold else (lambda: False)
        missed = []
        rows = ["| analysis | samples | shard bytes read | seconds | x previous size | analysis MB/s | raw read MB/s | "
                "analysis / raw | peak RSS (after imports) | planted answer |", "|---|---|---|---|---|---|---|---|---|---|"]
        base_blocks = -(-(27 * 27) // 256)  # both analyses read the base view's token blocks only
        for analysis, (_, array) in ANALYSES.items():
            previous = None
            for fraction in FRACTIONS:
                n = int(n_samples * fraction)
                drop()
                outcome = measure(path, analysis, n)
                drop()
                raw_seconds, nbytes = raw_read_seconds(touched_files(path, array, n, plan.batch_size, base_blocks))
                if not outcome["correct"]:
                    missed.append(f"{analysis} on {n} samples")
                growth = f"{outcome['seconds'] / previous:.2f}" if previous else ""
                previous = outcome["seconds"]
                rows.append(
                    f"| {analysis} ({array}) | {n} | {nbytes / 1e9:.2f} GB | {outcome['seconds']:.1f} | {growth} | "
                    f"{nbytes / outcome['seconds'] / 1e6:,.0f} | {nbytes / raw_seconds / 1e6:,.0f} | "
                    f"{raw_seconds / outcome['seconds']:.2f} | {outcome['peak_rss_mb']:,.0f} MB "
                    f"({outcome['imports_rss_mb']:,.0f} MB) | {'found' if outcome['correct'] else 'MISSED'} |")
    finally:
        if args.keep is None:
            shutil.rmtree(folder)
    rows.append(
        f"\nStore: {n_samples} samples x {TOKENS} tokens, {written / 2**30:.1f} GiB of payload, {on_disk / 2**30:.1f} GiB "
        f"on disk ({on_disk / ram_bytes():.2f} x RAM), written in {write_seconds:.0f} s ({written / write_seconds / 1e6:,.0f} "
        f"MB/s). Page cache {'dropped before every run' if cold else 'NOT dropped (--quick, or not root): reads may be cached'}. "
        "Variance: L2 variance of base-view image keys per (layer, KV head), Otsu split. Correspondence: PCK@0.1 of "
        f"{KEYPOINTS_PER_PAIR} keypoints per pair of samples, per (layer, KV head), nearest value token by cosine "
        "(on CPU one batched torch matmul per pair). "
        "Seconds count from the opening of the store, after imports. x previous size: 2.00 is linear. "
        "Targets: peak RSS < 4 GB at every size, analysis >= 0.5 x raw read.")
    append_results("Out-of-core analysis", command_line("out_of_core.py", args, "gib"), rows)
    if missed:
        raise SystemExit(f"planted answer not found by: {', '.join(missed)}")


if __name__ == "__main__":
    sys.exit(main())
