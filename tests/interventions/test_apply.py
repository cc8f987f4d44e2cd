"""Knockout through the attention mask, mean ablation and truncation through the input embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from capture.loading import load_model, resolve_model
from capture.prompts import build_prompt
from capture.samples import prepare_sample
from interventions import token_sets
from interventions.apply import Blocked, intervened, knockout_mask, plan_sample
from interventions.evaluate import forward_logits, sample_of
from interventions.spec import InterventionSpec, parse_spec
from store.schema import TokenKind


@pytest.fixture(scope="module")
def model(cache_home):
    """A private fp32 tiny OneVision (these tests switch its attention implementation)."""
    loaded = load_model(resolve_model("tiny-llava-ov"), "fp32", "cpu")
    yield loaded
    loaded.model.set_attn_implementation("sdpa")


def inputs(model, image, text="Describe the image.", template=None):
    prompt = template.format(image=model.processor.image_token, text=text) if template else \
        build_prompt(model.processor, "chat", text, 1)
    return prepare_sample(model, prompt, [image], {"objects": [{"label": "thing", "box": [0, 0, 30, 30]}]})


def all_layers(model) -> list[int]:
    return list(range(model.adapter.text_config(model.config).num_hidden_layers))


def test_knocking_out_image_keys_makes_the_output_independent_of_the_image(model, noise_image):
    first, second = inputs(model, noise_image(64, 48)), inputs(model, noise_image(64, 48).rotate(180))
    none = InterventionSpec()
    assert not torch.allclose(forward_logits(model, first, none), forward_logits(model, second, none))
    # Every text query (so nothing after the image carries it to the last position), every layer.
    spec = parse_spec({"knockout": [{"queries": "text", "keys": "image", "layers": all_layers(model)}]})
    assert torch.equal(forward_logits(model, first, spec), forward_logits(model, second, spec))
    # With only one text token after the image, knocking out the last position alone is enough.
    raw = "{text}{image}."
    first, second = inputs(model, noise_image(64, 48), template=raw), inputs(model, noise_image(64, 48).rotate(180), template=raw)
    last = parse_spec({"knockout": [{"queries": "last", "keys": "image", "layers": all_layers(model)}]})
    assert torch.equal(forward_logits(model, first, last), forward_logits(model, second, last))


def test_knocking_out_nothing_changes_nothing_bit_for_bit(model, noise_image):
    sample = inputs(model, noise_image(64, 48))
    spec = parse_spec({"knockout": [{"queries": "text", "keys": "object", "layers": all_layers(model)}]})
    plan, _ = plan_sample(spec, sample_of(sample, "0", "absent label"))
    assert plan.empty
    plain = forward_logits(model, sample, InterventionSpec())
    assert torch.equal(forward_logits(model, sample, spec, label="absent label"), plain)


def test_sdpa_and_eager_agree_under_a_knockout(model, noise_image):
    sample = inputs(model, noise_image(64, 48))
    spec = parse_spec({"knockout": [{"queries": "question", "keys": "image[0:40]", "layers": [1], "kv_heads": [0]}]})
    results = {}
    for implementation in ("sdpa", "eager"):
        model.model.set_attn_implementation(implementation)
        results[implementation] = forward_logits(model, sample, spec, last=5)
    model.model.set_attn_implementation("sdpa")
    torch.testing.assert_close(results["sdpa"], results["eager"], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(results["sdpa"], forward_logits(model, sample, InterventionSpec(), last=5))


def test_mask_knockout_equals_attention_with_the_entries_removed(model):
    """One attention layer, eager, with the mask vs softmax over the remaining keys computed by hand."""
    model.model.set_attn_implementation("eager")
    decoder = model.adapter.decoder(model.model)
    attention, config = decoder.layers[0].self_attn, decoder.config
    length, heads, kv_heads = 9, config.num_attention_heads, config.num_key_value_heads
    torch.manual_seed(0)
    hidden = torch.randn(1, length, config.hidden_size)
    cos, sin = decoder.rotary_emb(hidden, torch.arange(length)[None])
    blocked = [Blocked(1, np.array([5, 6, 8]), np.array([1, 2, 3, 6])), Blocked(None, np.array([7]), np.array([0, 4]))]
    mask = knockout_mask(None, blocked, 1, length, heads, kv_heads, hidden.dtype, hidden.device)
    with torch.no_grad():
        masked, _ = attention(hidden_states=hidden, attention_mask=mask, position_embeddings=(cos, sin))
        head_dim = attention.head_dim
        q = attention.q_proj(hidden).view(1, length, heads, head_dim).transpose(1, 2)
        k = attention.k_proj(hidden).view(1, length, kv_heads, head_dim).transpose(1, 2)
        v = attention.v_proj(hidden).view(1, length, kv_heads, head_dim).transpose(1, 2)
        q = q * cos[:, None] + torch.cat([-q[..., head_dim // 2:], q[..., : head_dim // 2]], -1) * sin[:, None]
        k = k * cos[:, None] + torch.cat([-k[..., head_dim // 2:], k[..., : head_dim // 2]], -1) * sin[:, None]
        out = torch.zeros(1, heads, length, head_dim)
        group = heads // kv_heads
        for h in range(heads):
            for i in range(length):
                keys = [j for j in range(i + 1) if j == i or not any(
                    (b.kv_head is None or b.kv_head == h // group) and i in b.queries and j in b.keys for b in blocked)]
                weights = torch.softmax(q[0, h, i] @ k[0, h // group, keys].T * attention.scaling, -1)
                out[0, h, i] = weights @ v[0, h // group, keys]
        expected = attention.o_proj(out.transpose(1, 2).reshape(1, length, -1))
    model.model.set_attn_implementation("sdpa")
    torch.testing.assert_close(masked, expected, rtol=1e-5, atol=1e-6)
    assert (mask[0, 2:4, 5, [1, 2, 3]] == torch.finfo(mask.dtype).min).all() and (mask[0, :2, 5, 1] == 0).all()


def record_embeddings(decoder):
    seen = []
    handle = decoder.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["inputs_embeds"].clone()),
                                               with_kwargs=True)
    return seen, handle


def test_mean_ablation_replaces_exactly_the_chosen_embeddings(model, noise_image):
    sample = inputs(model, noise_image(64, 48))
    decoder = model.adapter.decoder(model.model)
    mean = torch.arange(decoder.config.hidden_size, dtype=torch.float32)
    spec = parse_spec({"ablate": [{"tokens": "object+1", "mean_from": "s.zarr"}]})
    plan, _ = plan_sample(spec, sample_of(sample, "0"), {("s.zarr", "image"): mean})
    chosen = token_sets.resolve("object+1", sample_of(sample, "0"))
    assert 0 < len(chosen) < (sample.table.fields["kind"] == TokenKind.IMAGE).sum()
    with torch.inference_mode():
        plain, handle = record_embeddings(decoder)
        model.model(**sample.inputs)
        handle.remove()
        with intervened(model.adapter, model.model, plan):
            ablated, handle = record_embeddings(decoder)  # registered after ours: sees the edited embeddings
            model.model(**sample.inputs)
            handle.remove()
    others = np.setdiff1d(np.arange(len(sample.table)), chosen)
    assert torch.equal(ablated[0][0, chosen], mean.expand(len(chosen), -1))
    assert torch.equal(ablated[0][0, others], plain[0][0, others])


def test_truncation_keeps_exactly_n_image_tokens(model, noise_image):
    sample = inputs(model, noise_image(64, 48))
    decoder = model.adapter.decoder(model.model)
    plan, table = plan_sample(InterventionSpec(keep_image_tokens=7), sample_of(sample, "0"))
    image = token_sets.image_positions(sample.table)
    assert len(token_sets.image_positions(table)) == 7 and len(table) == len(sample.table) - len(image) + 7
    with torch.inference_mode():
        plain, handle = record_embeddings(decoder)
        model.model(**sample.inputs)
        handle.remove()
        with intervened(model.adapter, model.model, plan):
            kept, handle = record_embeddings(decoder)
            output = model.model(**sample.inputs)
            handle.remove()
    assert torch.equal(kept[0][0], plain[0][0, plan.kept])
    assert output.logits.shape[1] == len(table)
    assert np.array_equal(plan.kept, np.setdiff1d(np.arange(len(sample.table)), image[7:]))


@pytest.mark.parametrize("name", ["tiny-llava-ov", "tiny-qwen2.5-vl", "tiny-llava-1.5", "tiny-llava-next"])
def test_every_family_honours_knockout_and_truncation(tiny_model, noise_image, name):
    """Each family's decoder takes the mask and embedding hooks (Qwen's M-RoPE position ids are cut with the
    embeddings): full knockout removes the image's influence; truncation runs and changes the output."""
    loaded = tiny_model(name)
    first, second = inputs(loaded, noise_image(56, 56)), inputs(loaded, noise_image(56, 56).rotate(90))
    none = InterventionSpec()
    assert not torch.allclose(forward_logits(loaded, first, none), forward_logits(loaded, second, none))
    spec = parse_spec({"knockout": [{"queries": "text", "keys": "image", "layers": all_layers(loaded)}]})
    assert torch.equal(forward_logits(loaded, first, spec), forward_logits(loaded, second, spec))
    truncated = forward_logits(loaded, first, InterventionSpec(keep_image_tokens=3))
    assert truncated.shape == forward_logits(loaded, first, none).shape
    assert not torch.allclose(truncated, forward_logits(loaded, first, none))


def test_random_token_set_is_a_disjoint_draw_of_the_same_size(model, noise_image):
    sample = sample_of(inputs(model, noise_image(64, 48)), "img-1")
    chosen = token_sets.resolve("object", sample)
    drawn = token_sets.resolve("random:object", sample)
    image = np.flatnonzero(sample.table.fields["kind"] == TokenKind.IMAGE)
    assert len(drawn) == len(chosen) > 0 and len(chosen) <= len(image) // 2
    assert set(drawn) <= set(image) and not set(drawn) & set(chosen)
    assert np.array_equal(drawn, token_sets.resolve("random:object", sample))  # seeded: the same draw again
    parse_spec({"ablate": [{"tokens": "random:object", "mean_from": "s.zarr"}]})  # a valid spec token set
