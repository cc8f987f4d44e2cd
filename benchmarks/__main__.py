"""`python -m benchmarks [--quick]`: every CPU benchmark, one after another, results appended to
benchmarks/results.md (or $VLM_BENCH_RESULTS). `--quick` is a smoke test for CI (tiny sizes, no timing claims).

`python -m benchmarks gpu [--tiny] [--samples N]`: the device capture benchmark alone (benchmarks/gpu_capture.py).
`python -m benchmarks real-parts [--steps ...] [--quick]`: the measurements of the real-parts model
(benchmarks/real_parts.py; not part of the full run: it needs the fetched weights and takes tens of minutes)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = ["store_sizes.py", "correspondence_speed.py", "logit_lens_speed.py", "write_path.py", "out_of_core.py",
              "capture_overhead.py", "multiprocess_capture.py"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    scripts = {"gpu": "gpu_capture.py", "real-parts": "real_parts.py"}  # run alone, not in the full run
    if argv[:1] and argv[0] in scripts:
        return subprocess.run([sys.executable, str(HERE / scripts[argv[0]]), *argv[1:]], cwd=HERE).returncode
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    parser.add_argument("--quick", action="store_true", help="smoke test: tiny sizes, under 3 minutes")
    args = parser.parse_args(argv)
    for script in BENCHMARKS:
        started = time.perf_counter()
        command = [sys.executable, str(HERE / script)] + (["--quick"] if args.quick and script != "store_sizes.py" else [])
        result = subprocess.run(command, cwd=HERE)
        print(f"[{script}: exit {result.returncode}, {time.perf_counter() - started:.0f} s]", flush=True)
        if result.returncode:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
