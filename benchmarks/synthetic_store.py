"""Stores of synthetic activations written through the real writer (no model): shard payloads shaped like a
capture of a Qwen2-0.5B-sized model, with bf16 values drawn from a normal distribution."""

from __future__ import annotations

from pathlib import Path

import ml_dtypes
import numpy as np

from store import schema
from store.layout import StorePlan, empty_arrays, token_slots_for
from store.lossy import round_mantissa
from store.writer import ShardPayload, ShardWriter, create_store

ACTIVATIONS = (schema.HIDDEN, schema.KEYS, schema.VALUES, schema.FFN_TOPK_VALUE)


def bench_plan(n_samples: int, batch_size: int = 2, layers: int = 24, compression: str = "none") -> StorePlan:
    """Qwen2-0.5B sizes: d_model 896, 2 KV heads of 64, FFN 4864 (top-16 kept)."""
    return StorePlan(n_samples=n_samples, batch_size=batch_size, max_images=1, layers=tuple(range(layers)),
                     streams=tuple(range(layers + 1)), n_kv_heads=2, head_dim=64, d_model=896, ffn_units=4864,
                     ffn_topk=16, compute_dtype="bfloat16", keys_prerope=False, ffn_dense=False,
                     compression=compression)


def payload(plan: StorePlan, shard: int, tokens: int, rng: np.random.Generator, keep_bits: int | None = None) -> ShardPayload:
    """One shard of `tokens` image tokens per sample, every sample captured."""
    arrays = empty_arrays(plan, len(plan.shard_samples(shard)), token_slots_for(tokens))
    for name in ACTIVATIONS:
        array = arrays[name]
        axis = schema.ACTIVATION_DIMS[name].index(schema.TOKEN)
        index = [slice(None)] * array.ndim
        index[axis] = slice(0, tokens)
        region = array[tuple(index)]
        region[...] = rng.standard_normal(region.shape, dtype=np.float32).astype(ml_dtypes.bfloat16).view(np.uint16)
        if keep_bits is not None:
            round_mantissa(region, "bfloat16", keep_bits)
    index = arrays[schema.FFN_TOPK_INDEX]
    index[:, :, :tokens] = rng.integers(0, plan.ffn_units, index[:, :, :tokens].shape)
    arrays["kind"][:, :tokens] = schema.TokenKind.IMAGE
    arrays["status"][:] = schema.SampleStatus.CAPTURED
    arrays["n_tokens"][:] = tokens
    return ShardPayload(shard, arrays, tokens)


def write_store(path: Path, plan: StorePlan, tokens: int, seed: int = 0, keep_bits: int | None = None,
                payloads: list[ShardPayload] | None = None) -> int:
    """Write every shard of `plan` through the real ShardWriter (pre-built `payloads`, or generated shard by shard);
    returns the payload bytes handed to it."""
    config = {"model": "synthetic", "revision": "-", "compute_dtype": "bfloat16", "dataset": "synthetic",
              "layers": list(plan.layers), "streams": list(plan.streams), "tokens": ["image"], "n_samples": plan.n_samples,
              "ffn_topk": plan.ffn_topk}
    root = create_store(path, plan, {schema.ATTR_FORMAT: schema.FORMAT_NAME, schema.ATTR_SCHEMA_VERSION: schema.SCHEMA_VERSION,
                                     schema.ATTR_CAPTURE_CONFIG: config}, {"attrs": {}, "arrays": {}})
    writer = ShardWriter(root, plan)
    rng = np.random.default_rng(seed)
    total = 0
    for shard in range(plan.n_shards):
        item = payloads[shard] if payloads is not None else payload(plan, shard, tokens, rng, keep_bits)
        total += item.nbytes
        writer.submit(item)
    writer.close()
    return total
