"""`python -m benchmarks --quick` runs every benchmark end to end (a smoke test, not a timing test)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_quick_benchmarks_run(cache_home, tmp_path):
    results = tmp_path / "results.md"
    env = {**os.environ, "VLM_BENCH_RESULTS": str(results), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "benchmarks", "--quick"], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    text = results.read_text()
    for title in ("Store size per sample", "Correspondence: faiss vs numpy", "Logit lens throughput", "Write path",
                  "Out-of-core analysis", "Capture overhead vs bare forward"):
        assert f"## {title}" in text
    assert "MISSED" not in text.split("## Out-of-core analysis")[1].split("##")[0]  # planted answers found
    assert "Command: `python benchmarks/capture_overhead.py --quick`" in text and "Machine:" in text
