"""Qwen2.5-VL: the merged grid equals the model's M-RoPE ids, boxes follow the resize, pre-RoPE keys un-rotate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.options import CaptureOptions
from capture.prompts import build_prompt
from capture.run import run_capture
from store.schema import TokenKind

from .conformance import FamilyAdapterTests

SIZES = [(100, 80), (56, 56), (300, 60), (60, 300), (640, 480), (480, 640), (1000, 90)]  # (w, h)


@pytest.mark.parametrize("size", SIZES)
def test_grid_equals_mrope_ids(tiny_model, noise_image, size):
    tiny = tiny_model("tiny-qwen2.5-vl")
    width, height = size
    prompt = build_prompt(tiny.processor, "chat", "Describe.", 2, prefix="Look:")
    inputs = tiny.adapter.processor_inputs(tiny.processor, prompt, [noise_image(width, height), noise_image(90, 70)])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, [(height, width), (70, 90)])
    t, h, w = (ids[0].numpy() for ids in tiny.adapter.rope_position_ids(tiny.model, inputs))
    for index in (0, 1):
        mine = table.fields["image_index"] == index
        assert (table.fields["kind"][mine] == TokenKind.IMAGE).all()
        assert len(np.unique(t[mine])) == 1  # one temporal id for a still image
        assert np.array_equal(table.fields["grid_row"][mine], h[mine] - h[mine].min())
        assert np.array_equal(table.fields["grid_col"][mine], w[mine] - w[mine].min())
        assert h[mine].min() == w[mine].min() == t[mine][0]  # the grid starts at the text position before it
    text = table.fields["image_index"] < 0
    assert np.array_equal(t[text], h[text]) and np.array_equal(t[text], w[text])  # text: 1-D positions
    ids = inputs["input_ids"][0].numpy()
    start = tiny.processor.tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert (table.fields["kind"][ids == start] == TokenKind.SPECIAL).all()


@pytest.mark.parametrize("size", [(100, 80), (60, 300), (640, 480)])
def test_boxes_follow_the_resize(tiny_model, coordinate_image, size):
    tiny = tiny_model("tiny-qwen2.5-vl")
    width, height = size
    image = coordinate_image(width, height)
    inputs = tiny.adapter.processor_inputs(tiny.processor, build_prompt(tiny.processor, "chat", "x", 1), [image])
    table = tiny.adapter.token_table(tiny.processor, tiny.config, inputs, [(height, width)])
    ip = tiny.processor.image_processor
    _, gh, gw = inputs["image_grid_thw"][0].tolist()
    m, p, tp = ip.merge_size, ip.patch_size, ip.temporal_patch_size
    # pixel_values rows are patches in (block row, block col, row in block, col in block) order
    patches = inputs["pixel_values"].numpy().reshape(gh // m, gw // m, m, m, 3, tp, p, p)
    rgb = patches[:, :, :, :, :, 0].mean(axis=(2, 3, 5, 6))  # (rows, cols, 3): mean colour of each token
    rgb = rgb * np.array(ip.image_std) + np.array(ip.image_mean)
    box = table.box[table.fields["image_index"] == 0].reshape(gh // m, gw // m, 4)
    assert np.abs((box[..., 0] + box[..., 2]) / 2 - rgb[..., 0]).max() < 0.03
    assert np.abs((box[..., 1] + box[..., 3]) / 2 - rgb[..., 1]).max() < 0.03


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def test_prerope_keys_unrotate_with_3d_position_ids(tiny_model, synthetic_root, tmp_path):
    out = tmp_path / "qwen.zarr"
    run_capture(CaptureOptions(model="tiny-qwen2.5-vl", data_root=synthetic_root, limit=2, out=out, dtype="fp32",
                               keys_prerope=True, progress=False))
    tiny = tiny_model("tiny-qwen2.5-vl")
    decoder = tiny.adapter.decoder(tiny.model)
    ds = store.reader.open(out)
    for index in range(2):
        sample = ds.isel(sample=index)
        n = int(sample.n_tokens)
        record = open_dataset("synthetic-coco", synthetic_root, None, 2).records[index]
        inputs = tiny.adapter.processor_inputs(tiny.processor, str(sample.prompt.values), [load_image(record.image_paths[0])])
        assert np.array_equal(inputs["input_ids"][0].numpy(), sample.token_id.values[:n])
        position_ids = tiny.adapter.rope_position_ids(tiny.model, inputs)
        assert position_ids.shape == (3, 1, n)
        pre = torch.from_numpy(np.asarray(sample.keys_prerope.values[:, :, :n]))  # (layer, kv_head, token, head_dim)
        post = torch.from_numpy(np.asarray(sample["keys"].values[:, :, :n]))
        cos, sin = decoder.rotary_emb(pre, position_ids)  # (1, token, head_dim)
        assert torch.allclose(pre * cos + _rotate_half(pre) * sin, post, atol=1e-5)  # rotate forward
        assert torch.allclose(post * cos - _rotate_half(post) * sin, pre, atol=1e-5)  # and back
        flat = torch.arange(n)[None].expand(3, 1, n)  # 1-D positions are wrong for the image tokens
        cos1, sin1 = decoder.rotary_emb(pre, flat)
        wrong = (pre * cos1 + _rotate_half(pre) * sin1 - post).abs().amax(dim=(0, 1, 3)).numpy()
        image = sample.kind.values[:n] == TokenKind.IMAGE
        assert (wrong[image] > 1e-3).mean() > 0.5 and (wrong[: np.argmax(image)] < 1e-5).all()


class TestQwen2_5_VLConformance(FamilyAdapterTests):
    family = "qwen2_5_vl"
