"""`python -m benchmarks gpu --tiny`: the device benchmark's code path on CPU with the tiny config (a smoke test of
the code that runs on the GPU, not a timing test)."""

from __future__ import annotations

import re
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_tiny_device_benchmark_reports_every_figure(cache_home, tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common
    import gpu_capture

    results = tmp_path / "results.md"
    monkeypatch.setattr(common, "RESULTS", results)
    gpu_capture.main(["--tiny", "--samples", "2", "--workdir", str(tmp_path / "work")])
    text = results.read_text()
    assert "## Device capture at llava-ov-7b scale (tiny config, CPU smoke test)" in text
    assert "Command: `python -m benchmarks gpu --tiny --samples 2`" in text and "(bf16: " in text
    rows = {m[0]: m[1:] for m in re.findall(r"^\| ([a-z+, ]+) \| (\d+) \| ([\d.]+) \| [\d,]+ \| ([\d.]+) \|",
                                            text, re.MULTILINE)}
    assert set(rows) == {"bare forward", "hkv", "hkv+topk", "hkv, sync"}
    bare_tokens, bare_seconds, _ = rows["bare forward"]
    for mode in ("hkv", "hkv+topk", "hkv, sync"):
        tokens, seconds, ratio = rows[mode]
        assert tokens == bare_tokens  # every token of both samples stored, as many as the bare passes ran
        # the table rounds seconds to 0.01 and the ratio to 0.01: ratio x bare = seconds within those roundings
        ratio_, seconds_, bare_ = float(ratio), float(seconds), float(bare_seconds)
        assert abs(ratio_ * bare_ - seconds_) <= 0.005 * (1 + ratio_) + 0.005 * bare_ + 1e-9
    assert re.search(r"2 samples of 640x480 \(\d+ tokens each\)", text)
    assert re.search(r"Raw disk write [\d.]+ GB/s .* device-to-host [\d.]+ GB/s pinned", text)
    assert not any((tmp_path / "work").iterdir())  # stores and images deleted
