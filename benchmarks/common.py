"""Shared helpers: machine description, timing, peak memory, and appending results with their command."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(os.environ.get("VLM_BENCH_RESULTS") or Path(__file__).with_name("results.md"))
REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def machine() -> str:
    """CPU model and its bf16 flags, cores, memory, Python and torch versions, in one line."""
    from capture.device import cpu_info

    try:
        memory = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")).split()[1]) / 2**20
    except (OSError, StopIteration):
        memory = float("nan")
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = "none"
    return (f"{cpu_info().describe()}, {os.cpu_count()} cores, {memory:.0f} GiB RAM, Python "
            f"{platform.python_version()}, torch {torch_version}")


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_of(function: Callable[[], object], repeats: int) -> float:
    """Fastest wall time of `repeats` calls, in seconds."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def command_line(script: str, args: argparse.Namespace, *options: str) -> str:
    """The command that produced a run, for the results file: `--quick`, or the named options with their values
    (defaults spelled out, so the line still reproduces the run after a default changes; unset options left out)."""
    parts = [f"python benchmarks/{script}"]
    if args.quick:
        parts.append("--quick")
    else:
        parts += [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in options if getattr(args, name) is not None]
    return " ".join(parts)


def append_results(title: str, command: str, lines: list[str]) -> None:
    """Append a dated section with the command that produced it to benchmarks/results.md."""
    header = "" if RESULTS.exists() else "# Benchmarks\n\nEach section: date, machine, the command, its figures.\n"
    with RESULTS.open("a") as out:
        out.write(f"{header}\n## {title} ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)\n\n")
        out.write(f"Machine: {machine()}  \nCommand: `{command}`\n\n")
        out.write("\n".join(lines) + "\n")
    print("\n".join([f"## {title}", *lines]))
