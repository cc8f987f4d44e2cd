"""Bad inputs end in one clear line (exit 2, no traceback) or a counted skip, never lost data."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import store.reader
from capture.__main__ import main
from capture.options import CaptureOptions
from capture.run import run_capture
from store import schema
from tests.cli_runner import in_process

REPO = Path(__file__).resolve().parents[2]


def capture_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m capture --no-progress ARGS`: in this process, or a real subprocess when `env` is given."""
    if env is None:
        return in_process(main, "--no-progress", *args)
    return subprocess.run([sys.executable, "-m", "capture", "--no-progress", *args], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO), **env}, timeout=300)


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_unknown_model_alias(tmp_path):
    assert_one_line_error(capture_cli("--model", "llava-ov-9000b", "--out", str(tmp_path / "x.zarr")),
                          "unknown model 'llava-ov-9000b'", "llava-ov-7b")


def test_missing_weights_say_what_and_how(tmp_path, monkeypatch):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    result = capture_cli("--model", "llava-ov-7b", "--out", str(tmp_path / "x.zarr"))
    assert_one_line_error(result, "llava-hf/llava-onevision-qwen2-7b-ov-hf", "revision main", "not in the HF cache",
                          "hf download")
    result = capture_cli("--model", "llava-ov-0.5b", "--revision", "v1", "--out", str(tmp_path / "x.zarr"))
    assert_one_line_error(result, "llava-onevision-qwen2-0.5b-ov-hf", "revision v1")


def test_local_directory_without_weights(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text("{}")
    assert_one_line_error(capture_cli("--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "x.zarr")),
                          "no weight files")


def test_missing_data_root(tmp_path):
    result = capture_cli("--dataset", "coco", "--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x.zarr"))
    assert_one_line_error(result, "does not exist")
    assert not (tmp_path / "x.zarr").exists()


def test_unwritable_output(cache_home, synthetic_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = capture_cli("--data-root", str(synthetic_root), "--limit", "1", "--out", str(blocker / "x.zarr"))
    assert_one_line_error(result, "cannot write the store")


def test_output_that_is_not_a_store_is_left_alone(cache_home, synthetic_root, tmp_path):
    precious = tmp_path / "results"
    precious.mkdir()
    (precious / "thesis.tex").write_text("months of work")
    result = capture_cli("--data-root", str(synthetic_root), "--limit", "1", "--out", str(precious), "--overwrite")
    assert_one_line_error(result, "not an activation store")
    assert (precious / "thesis.tex").read_text() == "months of work"


def test_corrupt_and_missing_images_are_counted_skips(cache_home, synthetic_root, tmp_path):
    data = tmp_path / "coco"
    shutil.copytree(synthetic_root, data)
    images = sorted((data / "val2017").glob("*.jpg"))
    images[1].write_bytes(images[1].read_bytes()[:200])  # truncated JPEG
    images[3].write_bytes(b"this is not an image")
    images[4].unlink()
    summary = run_capture(CaptureOptions(dataset="coco", data_root=data, limit=6, out=tmp_path / "s.zarr",
                                         batch_size=4, progress=False))
    assert (summary.captured, summary.skipped) == (3, 3)
    assert any("corrupt image" in r for r in summary.skip_reasons)
    assert any("missing image" in r for r in summary.skip_reasons)
    ds = store.reader.open(tmp_path / "s.zarr")
    status = ds.status.values
    assert list(status) == [1, 2, 1, 2, 2, 1]
    assert (ds.n_tokens.values[status == schema.SampleStatus.SKIPPED] == 0).all()
    assert all(ds.skip_reason.values[status == schema.SampleStatus.SKIPPED])
    assert not np.asarray(ds.hidden.values[1]).view(np.uint16).any()


def test_bad_option_values(tmp_path):
    assert_one_line_error(capture_cli("--layers", "0-9", "--out", str(tmp_path / "x.zarr")), "out of range")
    assert_one_line_error(capture_cli("--tokens", "pixels", "--out", str(tmp_path / "x.zarr")), "choose from")
    assert_one_line_error(capture_cli("--device", "cuda", "--out", str(tmp_path / "x.zarr")), "no CUDA device")


def test_every_alias_fails_clearly_without_weights(tmp_path, monkeypatch):
    import pytest

    from capture.errors import CaptureError
    from capture.loading import resolve_model
    from capture.registry import ALIASES

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    for alias, entry in ALIASES.items():
        with pytest.raises(CaptureError, match="not in the HF cache") as error:
            resolve_model(alias)
        assert entry.hub_id in str(error.value) and f"hf download {entry.hub_id}" in str(error.value)
    result = capture_cli("--model", "qwen2.5-vl-7b", "--out", str(tmp_path / "x.zarr"),
                         env={"HF_HUB_CACHE": str(tmp_path / "empty-cache")})
    assert_one_line_error(result, "Qwen/Qwen2.5-VL-7B-Instruct", "not in the HF cache")


def test_unknown_architecture_is_refused(tmp_path):
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "config.json").write_text('{"model_type": "idefics2"}')
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"")
    result = capture_cli("--model", str(tmp_path / "ckpt"), "--out", str(tmp_path / "x.zarr"))
    assert_one_line_error(result, "unsupported architecture model_type='idefics2'", "qwen2_5_vl", "refusing to guess")
    assert not (tmp_path / "x.zarr").exists()


def test_bad_prompt_options(tmp_path):
    out = str(tmp_path / "x.zarr")
    assert_one_line_error(capture_cli("--visual-prefix", "--out", out), "--template bbox only")
    assert_one_line_error(capture_cli("--template", "bbox", "--out", out), "--samples annotations")
    assert_one_line_error(capture_cli("--prefix", "{nosuch} ", "--out", out), "sample 1:", "names {nosuch}")
    assert_one_line_error(capture_cli("--template", "{text}", "--out", out), "needs an {image} slot")
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image

    Image.new("RGB", (20, 20)).save(images / "a.png")
    assert_one_line_error(capture_cli("--dataset", "folder", "--data-root", str(images), "--samples", "annotations",
                                      "--out", out), "no box annotations")
    assert not (tmp_path / "x.zarr").exists()


def test_prefix_the_chat_template_cannot_place_stops_before_the_store(tmp_path):
    result = capture_cli("--model", "tiny-llava-1.5", "--prefix", "A dog. ", "--out", str(tmp_path / "x.zarr"))
    assert_one_line_error(result, "moves images before all text")
    assert not (tmp_path / "x.zarr").exists()
