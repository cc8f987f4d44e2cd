"""What every family adapter must do, checked on the family's tiny model: `FamilyAdapterTests`, which each family's
test module subclasses (setting `family`). A new family gets the whole suite by one subclass.

- the token table marks exactly the image placeholder positions, with boxes inside the image, and the model
  accepts exactly that many placeholders;
- every path into the model the adapter names (projections, norms, rotary, scaling, head width) has the config's
  shapes, and the adapter's rotary with its position ids turns the pre-RoPE keys into the cached keys;
- what a capture stores equals, bit for bit, a plain transformers forward pass (bf16 and fp32).
"""

from __future__ import annotations

from typing import Any, ClassVar

import ml_dtypes
import numpy as np
import pytest
import torch

import store.reader
from capture.datasets import load_image, open_dataset
from capture.loading import load_model, resolve_model
from capture.options import CaptureOptions
from capture.prompts import build_prompt
from capture.registry import TINY_MODELS
from capture.run import run_capture
from capture.samples import prepare_sample
from store.schema import TokenKind

SIZES = [(100, 80), (56, 56), (300, 60), (60, 300), (640, 480)]  # (w, h)


def bits(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's raw values (bf16 as its uint16 bits)."""
    tensor = tensor.detach()
    return (tensor.view(torch.uint16) if tensor.dtype == torch.bfloat16 else tensor).cpu().numpy()


def stored_bits(array: Any) -> np.ndarray:
    values = np.asarray(array)
    return values.view(np.uint16) if values.dtype == ml_dtypes.bfloat16 else values


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def plain_forward(loaded: Any, inputs: dict[str, torch.Tensor]) -> tuple[Any, dict, dict]:
    """A plain forward pass, plus the MLP inputs (to compute FFN coefficients independently of the hooks) and the
    k_proj outputs. Module paths are spelled here, not taken from the adapter: the test checks the adapter."""
    decoder = loaded.model.model.language_model
    mlp_inputs, k_proj_outputs = {}, {}
    handles = []
    for index, layer in enumerate(decoder.layers):
        handles.append(layer.mlp.register_forward_pre_hook(lambda m, a, i=index: mlp_inputs.__setitem__(i, a[0])))
        handles.append(layer.self_attn.k_proj.register_forward_hook(
            lambda m, a, o, i=index: k_proj_outputs.__setitem__(i, o)))
    with torch.inference_mode():
        output = loaded.model(**inputs, output_hidden_states=True, use_cache=True)
        coefficients = {i: layer.mlp.act_fn(layer.mlp.gate_proj(mlp_inputs[i])) * layer.mlp.up_proj(mlp_inputs[i])
                        for i, layer in enumerate(decoder.layers)}
    for handle in handles:
        handle.remove()
    return output, coefficients, k_proj_outputs


class FamilyAdapterTests:
    """Subclass with `family = "<adapter family>"`; the tiny model comes from the registry."""

    family: ClassVar[str]

    @property
    def model_name(self) -> str:
        names = [name for name, family in TINY_MODELS.items() if family == self.family]
        assert len(names) == 1, f"the registry names {len(names)} tiny models of family {self.family}"
        return names[0]

    @pytest.mark.parametrize("size", SIZES)
    def test_image_tokens_are_the_placeholders(self, tiny_model, noise_image, size):
        tiny = tiny_model(self.model_name)
        width, height = size
        prompt = build_prompt(tiny.processor, "chat", "Describe.", 1)
        prepared = prepare_sample(tiny, prompt, [noise_image(width, height)])
        fields, box = prepared.table.fields, prepared.table.box
        ids = prepared.inputs["input_ids"][0].numpy()
        image = fields["image_index"] == 0
        assert np.array_equal(np.flatnonzero(image), np.flatnonzero(ids == tiny.adapter.image_token_id(tiny.config)))
        assert (fields["image_index"][~image] == -1).all()
        assert np.isin(fields["kind"][image], [TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE]).all()
        cells = fields["kind"] == TokenKind.IMAGE
        assert np.isfinite(box[cells]).all() and (box[cells] >= 0).all() and (box[cells] <= 1).all()
        assert (box[cells, 2] >= box[cells, 0]).all() and (box[cells, 3] >= box[cells, 1]).all()
        assert np.isnan(box[~cells]).all()
        assert np.array_equal(fields["position"], np.arange(len(ids)))
        with torch.inference_mode():  # the model accepts exactly this many placeholders
            tiny.model(**prepared.inputs)

    def test_paths_into_the_model_have_the_config_shapes(self, tiny_model):
        tiny = tiny_model(self.model_name)
        adapter, model = tiny.adapter, tiny.model
        text = adapter.text_config(tiny.config)
        head_dim = adapter.head_dim(tiny.config)
        for layer in range(text.num_hidden_layers):
            assert adapter.q_proj(model, layer).out_features == text.num_attention_heads * head_dim
            assert adapter.k_proj(model, layer).out_features == text.num_key_value_heads * head_dim
            assert adapter.o_proj(model, layer).in_features == text.num_attention_heads * head_dim
            assert adapter.down_proj(model, layer).in_features == text.intermediate_size
            assert adapter.down_proj(model, layer).out_features == text.hidden_size
            assert adapter.attention_scaling(model, layer) == pytest.approx(head_dim ** -0.5)
        assert adapter.final_norm(model).weight.shape == (text.hidden_size,)
        assert 0 < adapter.norm_eps(model) < 1e-3
        assert adapter.unembedding(model).weight.shape == (text.vocab_size, text.hidden_size)

    def test_rotary_turns_prerope_keys_into_cached_keys(self, tiny_model, noise_image):
        tiny = tiny_model(self.model_name)
        adapter, model = tiny.adapter, tiny.model
        prepared = prepare_sample(tiny, build_prompt(tiny.processor, "chat", "Describe.", 1), [noise_image(100, 80)])
        recorded = {}
        handle = adapter.k_proj(model, 0).register_forward_hook(lambda m, a, o: recorded.__setitem__("k", o))
        with torch.inference_mode():
            output = model(**prepared.inputs, use_cache=True)
        handle.remove()
        n = len(prepared.table)
        pre = recorded["k"][0].view(n, -1, adapter.head_dim(tiny.config)).transpose(0, 1)  # (kv_heads, n, head_dim)
        cos, sin = adapter.rotary(model)(pre, adapter.rope_position_ids(model, prepared.inputs))
        torch.testing.assert_close(pre * cos + rotate_half(pre) * sin, output.past_key_values.layers[0].keys[0],
                                   rtol=1e-5, atol=1e-5)

    @pytest.mark.parametrize("dtype", ["bf16", "fp32"])
    def test_store_equals_plain_forward(self, dtype, cache_home, synthetic_root, tmp_path):
        out = tmp_path / f"{dtype}.zarr"
        run_capture(CaptureOptions(
            model=self.model_name, data_root=synthetic_root, limit=4, out=out, batch_size=3, dtype=dtype,
            keys_prerope=True, ffn_dense_tokens="all", ffn_topk=7, progress=False,
        ))
        ds = store.reader.open(out)
        loaded = load_model(resolve_model(self.model_name), dtype, "cpu")
        records = open_dataset("synthetic-coco", synthetic_root, None, 4).records
        for index, record in enumerate(records):
            prompt = build_prompt(loaded.processor, "chat", "Describe the image.", 1)
            inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, [load_image(record.image_paths[0])])
            self._check_sample(loaded, inputs, ds.isel(sample=index).compute())

    @staticmethod
    def _check_sample(loaded: Any, inputs: dict[str, torch.Tensor], sample: Any) -> None:
        output, coefficients, k_proj = plain_forward(loaded, inputs)
        decoder = loaded.model.model.language_model
        n_layers = len(decoder.layers)
        n = int(sample.n_tokens)
        assert n == inputs["input_ids"].shape[1]  # --tokens all
        assert (sample.token_id.values[:n] == inputs["input_ids"][0].numpy()).all()
        for stream in range(n_layers):  # residual input of each layer == hidden_states[i]
            assert np.array_equal(stored_bits(sample.hidden.sel(stream=stream).values[:n]),
                                  bits(output.hidden_states[stream][0]))
        # the last stream is the raw last-layer output; the final norm of it is transformers' last entry
        raw = torch.from_numpy(np.asarray(sample.hidden.sel(stream=n_layers).values[:n]).astype(np.float32))
        normed = decoder.norm(raw.to(loaded.dtype)[None])[0]
        assert np.array_equal(bits(normed), bits(output.hidden_states[n_layers][0]))
        assert not np.array_equal(bits(raw.to(loaded.dtype)), bits(output.hidden_states[n_layers][0]))
        for layer in range(n_layers):
            cache = output.past_key_values.layers[layer]
            assert np.array_equal(stored_bits(sample["keys"].sel(layer=layer).values[:, :n]), bits(cache.keys[0]))
            assert np.array_equal(stored_bits(sample["values"].sel(layer=layer).values[:, :n]), bits(cache.values[0]))
            prerope = k_proj[layer][0].view(n, -1, sample.sizes["head_dim"]).transpose(0, 1)
            assert np.array_equal(stored_bits(sample.keys_prerope.sel(layer=layer).values[:, :n]), bits(prerope))
            dense = coefficients[layer][0]
            assert np.array_equal(stored_bits(sample.ffn_dense.sel(layer=layer).values[:n]), bits(dense))
            top_values, top_index = torch.topk(dense, 7, dim=-1)
            assert np.array_equal(sample.ffn_topk_index.sel(layer=layer).values[:n], top_index.numpy())
            assert np.array_equal(stored_bits(sample.ffn_topk_value.sel(layer=layer).values[:n]), bits(top_values))
        assert bool(sample.ffn_dense_selected.values[:n].all())
