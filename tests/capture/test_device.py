"""bf16 detection from /proc/cpuinfo and the compute dtype `--dtype auto` picks from it."""

from __future__ import annotations

import pytest
import torch

from capture import device, loading
from capture.device import CpuInfo, auto_compute_dtype, parse_cpuinfo
from store.schema import CaptureConfig

AVX2_ONLY = "processor\t: 0\nmodel name\t: AMD EPYC 7763\nflags\t\t: fpu sse avx avx2 fma\n\nprocessor\t: 1\n"
ZEN4 = "model name\t: AMD EPYC 9654\nflags\t\t: avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "model name\t: Intel Xeon 8480+\nflags\t\t: avx2 avx512f avx512_bf16 amx_bf16 amx_tile\n"
NEOVERSE = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_bf16_flags_are_read_from_cpuinfo():
    assert parse_cpuinfo(AVX2_ONLY) == CpuInfo("AMD EPYC 7763", ())
    assert parse_cpuinfo(ZEN4) == CpuInfo("AMD EPYC 9654", ("avx512_bf16",))
    assert parse_cpuinfo(SAPPHIRE).bf16_flags == ("avx512_bf16", "amx_bf16")
    assert parse_cpuinfo(NEOVERSE).bf16_flags == ("bf16",)
    assert parse_cpuinfo("model name : Mystery\n").native_bf16 is None  # no flags line: unknown, not "missing"
    assert parse_cpuinfo(AVX2_ONLY).describe() == "AMD EPYC 7763 (bf16: none, emulated)"


@pytest.mark.parametrize("text, checkpoint, device_type, expected", [
    (AVX2_ONLY, torch.bfloat16, "cpu", torch.float32),  # the one fallback
    (ZEN4, torch.bfloat16, "cpu", torch.bfloat16),
    (AVX2_ONLY, torch.bfloat16, "cuda", torch.bfloat16),  # GPUs compute bf16 natively
    (AVX2_ONLY, torch.float16, "cpu", torch.float16),  # only bf16 is swapped
    ("model name : Mystery\n", torch.bfloat16, "cpu", torch.bfloat16),  # unknown: the checkpoint's dtype
])
def test_auto_dtype(text, checkpoint, device_type, expected):
    dtype, note = auto_compute_dtype(checkpoint, torch.device(device_type), parse_cpuinfo(text))
    assert dtype == expected
    assert (note is not None) == (expected != checkpoint)
    if note:
        assert "AMD EPYC 7763" in note and "90x" in note and "--dtype bf16" in note


def test_capture_without_native_bf16_computes_fp32_and_records_why(monkeypatch, capfd, synthetic_root, tmp_path):
    from capture.options import CaptureOptions
    from capture.run import run_capture

    monkeypatch.setattr(device, "cpu_info", lambda: parse_cpuinfo(AVX2_ONLY))
    loaded = loading.open_model(loading.resolve_model("tiny-llava-ov"), "auto", "cpu")
    assert loaded.dtype == torch.float32
    assert loading.open_model(loading.resolve_model("tiny-llava-ov"), "bf16", "cpu").dtype_note is None  # asked for
    out = tmp_path / "s.zarr"
    run_capture(CaptureOptions(model="tiny-llava-ov", data_root=synthetic_root, limit=1, out=out, progress=False,
                               ffn_topk=0))
    line = [x for x in capfd.readouterr().err.splitlines() if x.startswith("note: computing in float32")]
    assert len(line) == 1 and "no native bf16" in line[0]
    import store.reader

    config = CaptureConfig.of(store.reader.open(out).attrs)
    assert config.compute_dtype == "float32" and "AMD EPYC 7763" in config.compute_dtype_note
