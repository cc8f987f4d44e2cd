"""Write path: store MB/s through the real writer vs a raw sequential write of the same bytes to the same disk,
in the same run; and bytes on disk / raw bytes per array for no compression, zstd-1, and zstd-1 after keeping
4 bf16 mantissa bits (`--keep-mantissa-bits 4`). Synthetic bf16 activations (normal values), Qwen2-0.5B sizes.

Usage: python benchmarks/write_path.py [--quick] [--samples 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr
from common import REPO, append_results, command_line, peak_rss_mb

from store import schema
from store.testing import ACTIVATIONS, noise_payload, synthetic_plan, write_synthetic_store

TOKENS = 1524
CODECS = {"none": ("none", None), "zstd-1": ("zstd", None), "zstd-1 + 4 mantissa bits": ("zstd", 4)}


def raw_write_seconds(folder: Path, nbytes: int) -> float:
    """Sequential writes of `nbytes` in 64 MB blocks, then fsync: to disk, as the store's time (which ends with
    `os.sync()`) is."""
    block = os.urandom(1 << 20) * 64
    started = time.perf_counter()
    with open(folder / "raw.bin", "wb") as out:
        written = 0
        while written < nbytes:
            out.write(block[: min(len(block), nbytes - written)])
            written += min(len(block), nbytes - written)
        out.flush()
        os.fsync(out.fileno())
    seconds = time.perf_counter() - started
    (folder / "raw.bin").unlink()
    return seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    samples, repeats = (2, 1) if args.quick else (args.samples, args.repeats)
    rows = ["| codec | store MB/s | raw MB/s | store / raw | " + " | ".join(f"{a} on disk / raw" for a in ACTIVATIONS) + " |",
            "|---|---|---|---|" + "---|" * len(ACTIVATIONS)]
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:  # the repository's disk, like real stores
        for label, (compression, keep) in CODECS.items():
            path = Path(tmp) / "store.zarr"
            plan = synthetic_plan(samples, compression=compression)
            rng = np.random.default_rng(0)
            payloads = [noise_payload(plan, shard, TOKENS, rng, keep) for shard in range(plan.n_shards)]  # not timed
            store_seconds, raw_seconds = [], []
            for _ in range(repeats):  # interleaved, best of each: the disk's rate drifts between runs
                shutil.rmtree(path, ignore_errors=True)
                started = time.perf_counter()
                nbytes = write_synthetic_store(path, plan, TOKENS, payloads=payloads)
                os.sync()  # to disk, as the raw write is
                store_seconds.append(time.perf_counter() - started)
                raw_seconds.append(raw_write_seconds(Path(tmp), nbytes))
            del payloads
            root = zarr.open_group(str(path), mode="r")
            ratios = []
            for name in ACTIVATIONS:
                array = root[name]
                raw = array.nbytes * TOKENS / array.shape[schema_token_axis(array)]
                ratios.append(f"{array.nbytes_stored() / raw:.2f}")
            store, raw = min(store_seconds), min(raw_seconds)
            rows.append(f"| {label} | {nbytes / store / 1e6:,.0f} | {nbytes / raw / 1e6:,.0f} | "
                        f"{raw / store:.2f} | " + " | ".join(ratios) + " |")
            shutil.rmtree(path)
    rows.append(f"\n{samples} samples x {TOKENS} tokens ({nbytes / 1e6:,.0f} MB of payload), 2 samples per shard, "
                f"best of {repeats} interleaved runs each. Target: store >= 0.7 x raw for the default codec (none). "
                f"Peak RSS {peak_rss_mb():,.0f} MB.")
    append_results("Write path", command_line("write_path.py", args, "samples", "repeats"), rows)


def schema_token_axis(array: zarr.Array) -> int:
    return list(array.metadata.dimension_names).index(schema.TOKEN)


if __name__ == "__main__":
    sys.exit(main())
