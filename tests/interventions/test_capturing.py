"""Intervened captures (`python -m capture --intervention`): the store holds the intervened run, bit-exact with a
forward pass under the same hooks."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.errors import CaptureError
from capture.options import CaptureOptions
from capture.prompts import DEFAULT_PROMPT, build_prompt
from capture.run import run_capture
from capture.samples import prepare_sample
from interventions.capturing import capture_intervened
from interventions.evaluate import forward_logits
from interventions.spec import load_spec


def test_capture_with_a_knockout_and_truncation_matches_the_intervened_forward(tiny_model, synthetic_root, tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps({"name": "k", "knockout": [{"queries": "text", "keys": "image", "layers": [1]}],
                                     "keep_image_tokens": 20}))
    out = tmp_path / "knocked.zarr"
    capture_intervened(CaptureOptions(model="tiny-llava-ov", data_root=synthetic_root, limit=2, out=out, dtype="fp32",
                                      batch_size=2, intervention=spec_path, progress=False))
    ds = store.reader.open(out)
    assert ds.attrs["capture_config"]["intervention"]["keep_image_tokens"] == 20
    assert ((ds.kind.values == 2) | (ds.kind.values == 3)).sum(axis=1).tolist() == [20, 20]
    loaded = tiny_model("tiny-llava-ov")
    record = open_dataset("synthetic-coco", synthetic_root, None, 2).records[0]
    images = [load_image(record.image_paths[0])]
    prepared = prepare_sample(loaded, build_prompt(loaded.processor, "chat", DEFAULT_PROMPT, 1), images, record.annotation)
    n = int(ds.n_tokens.values[0])
    # the final stream at the last position, pushed through the lens, is what the intervened model predicts
    hidden = torch.from_numpy(np.asarray(ds.hidden.values[0, -1, n - 1], np.float32))
    logits = forward_logits(loaded, prepared, load_spec(spec_path))[-1]
    decoder = loaded.adapter.decoder(loaded.model)
    with torch.inference_mode():
        expected = loaded.adapter.unembedding(loaded.model)(decoder.norm(hidden[None]))[0]
    torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
    assert n == len(prepared.table) - (int(np.isin(prepared.table.fields["kind"], [2, 3]).sum()) - 20)


def test_bad_spec_fails_before_anything_is_written(synthetic_root, tmp_path):
    (tmp_path / "spec.json").write_text('{"knockout": [{"queries": "nope", "layers": [0]}]}')
    with pytest.raises(CaptureError, match="unknown token set 'nope'"):
        capture_intervened(CaptureOptions(data_root=synthetic_root, limit=1, out=tmp_path / "s.zarr",
                                          intervention=tmp_path / "spec.json", progress=False))
    assert not (tmp_path / "s.zarr").exists()


def test_attention_rows_are_refused_with_a_knockout(synthetic_root, tmp_path):
    (tmp_path / "spec.json").write_text('{"knockout": [{"queries": "last", "keys": "image", "layers": [0]}]}')
    with pytest.raises(CaptureError, match="--attention-last recomputes attention rows without the knockout mask"):
        capture_intervened(CaptureOptions(data_root=synthetic_root, limit=1, out=tmp_path / "s.zarr",
                                          attention_last=True, intervention=tmp_path / "spec.json", progress=False))


def test_capture_without_a_loader_refuses_an_intervention(synthetic_root, tmp_path):
    (tmp_path / "spec.json").write_text('{"keep_image_tokens": 4}')
    with pytest.raises(CaptureError, match="needs an intervention loader"):
        run_capture(CaptureOptions(data_root=synthetic_root, limit=1, out=tmp_path / "s.zarr",
                                   intervention=tmp_path / "spec.json", progress=False))
    assert not (tmp_path / "s.zarr").exists()
