"""Testing helpers for stores, public for downstream users and our own tests and benchmarks:

- `assert_stores_equal`: two stores hold bit-identical arrays (lens and progress records included) and the same
  capture configuration;
- synthetic stores written through the real writer (no model): `synthetic_plan` (Qwen2-0.5B-sized arrays),
  `noise_payload` (bf16 normal noise), `write_synthetic_store`;
- planted stores (`PlantedStore`): keys and values of the first half of the layers are the same positional vectors
  in every sample, so variance and correspondence analyses have a known answer (`planted_layers`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import ml_dtypes
import numpy as np
import zarr

from store import location, schema
from store.layout import StorePlan, empty_arrays, token_slots_for
from store.location import Location
from store.lossy import round_mantissa
from store.schema import CaptureConfig, ImagePart
from store.writer import LensPayload, ShardPayload, ShardWriter, create_store, finalize

GROUPS = ("", schema.LENS_GROUP, schema.PROGRESS_GROUP)


def store_arrays(path: Location) -> dict[str, np.ndarray]:
    """Every array of the store at `path`, keyed by its path in the store ("hidden", "lens/unembedding", ...)."""
    root = zarr.open_group(location.zarr_store(path, read_only=True), mode="r")
    found = {}
    for group_path in GROUPS:
        group = root[group_path] if group_path else root
        for name in group.array_keys():
            found[f"{group_path}/{name}" if group_path else name] = group[name][...]
    return found


def assert_stores_equal(expected: Location, actual: Location) -> None:
    """Bit-identical arrays (lens and progress records included; NaN equals NaN) and the same capture configuration
    and completion; AssertionError naming the first difference."""
    want, got = store_arrays(expected), store_arrays(actual)
    assert want.keys() == got.keys(), f"arrays differ: {sorted(set(want) ^ set(got))}"
    for name in want:
        assert want[name].dtype == got[name].dtype, f"{name}: dtype {want[name].dtype} != {got[name].dtype}"
        assert np.array_equal(want[name], got[name], equal_nan=want[name].dtype.kind == "f"), f"{name} differs"
    want_root = zarr.open_group(location.zarr_store(expected, read_only=True), mode="r")
    got_root = zarr.open_group(location.zarr_store(actual, read_only=True), mode="r")
    want_config, got_config = (root.attrs[schema.ATTR_CAPTURE_CONFIG] for root in (want_root, got_root))
    assert want_config == got_config, f"capture_config differs: {CaptureConfig.from_attrs(want_config)} != " \
                                      f"{CaptureConfig.from_attrs(got_config)}"
    assert (schema.ATTR_CAPTURE_COMPLETE in want_root.attrs) == (schema.ATTR_CAPTURE_COMPLETE in got_root.attrs)


ACTIVATIONS = (schema.HIDDEN, schema.KEYS, schema.VALUES, schema.FFN_TOPK_VALUE)


def synthetic_plan(n_samples: int, batch_size: int = 2, layers: int = 24, compression: str = "none") -> StorePlan:
    """Qwen2-0.5B sizes: d_model 896, 2 KV heads of 64, FFN 4864 (top-16 kept)."""
    return StorePlan(n_samples=n_samples, batch_size=batch_size, max_images=1, layers=tuple(range(layers)),
                     streams=tuple(range(layers + 1)), n_kv_heads=2, head_dim=64, d_model=896, ffn_units=4864,
                     ffn_topk=16, compute_dtype="bfloat16", keys_prerope=False, ffn_dense=False,
                     compression=compression)


def noise_payload(plan: StorePlan, shard: int, tokens: int, rng: np.random.Generator,
                  keep_bits: int | None = None) -> ShardPayload:
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
    arrays[schema.KIND][:, :tokens] = schema.TokenKind.IMAGE
    arrays[schema.STATUS][:] = schema.SampleStatus.CAPTURED
    arrays[schema.N_TOKENS][:] = tokens
    return ShardPayload(shard, arrays, tokens)


def write_synthetic_store(path: Path, plan: StorePlan, tokens: int, seed: int = 0, keep_bits: int | None = None,
                payloads: list[ShardPayload] | None = None, planted: PlantedStore | None = None) -> int:
    """Write every shard of `plan` through the real ShardWriter (pre-built `payloads`, a `planted` store's, or
    normal noise generated shard by shard); returns the payload bytes handed to it."""
    config = CaptureConfig(model="synthetic", revision="-", compute_dtype=plan.compute_dtype, dataset="synthetic",
                           layers=plan.layers, streams=plan.streams, tokens=(schema.TokenSet.IMAGE,),
                           n_samples=plan.n_samples, ffn_topk=plan.ffn_topk, batch_size=plan.batch_size,
                           compression=plan.compression)
    plan = replace(plan, token_capacity=max(plan.token_capacity, token_slots_for(tokens)))
    root = create_store(path, plan, {schema.ATTR_FORMAT: schema.FORMAT_NAME, schema.ATTR_SCHEMA_VERSION: schema.SCHEMA_VERSION,
                                     schema.ATTR_CAPTURE_CONFIG: config.to_attrs()}, LensPayload())
    writer = ShardWriter(root, plan)
    rng = np.random.default_rng(seed)
    total = 0
    for shard in range(plan.n_shards):
        if payloads is not None:
            item = payloads[shard]
        elif planted is not None:
            item = planted.payload(shard)
        else:
            item = noise_payload(plan, shard, tokens, rng, keep_bits)
        total += item.nbytes
        writer.submit(item)
    writer.close()
    finalize(root, path)
    return total


# ---------------------------------------------------------------------------------------------------------
# Stores with a token table and planted answers, for the out-of-core analysis benchmark

BASE_GRID = 27  # base view of 27 x 27 = 729 tokens (SigLIP-384, as in OneVision); the rest of the tokens: a finer grid
IMAGE_SIZE = 384


def planted_layers(layers: Sequence[int]) -> list[int]:
    """Layers whose keys and values are the same positional vectors in every sample (plus 5 % noise): their keys are
    input-agnostic (low variance) and their values match each token to itself across images (PCK 1)."""
    layers = [int(layer) for layer in layers]
    return layers[: len(layers) // 2]


class PlantedStore:
    """Shard payloads for a planted store. Hidden states (most of the bytes) are windows of one pool of bf16 noise,
    so that tens of GB are generated at memory speed; keys, values and FFN values are drawn per shard."""

    def __init__(self, plan: StorePlan, tokens: int, seed: int = 0):
        self.plan, self.tokens = plan, tokens
        self.rng = np.random.default_rng(seed)
        template = empty_arrays(plan, plan.batch_size, token_slots_for(tokens))
        self.hidden_pool = self._bf16_bits(self.rng.standard_normal(2 * template[schema.HIDDEN].size, dtype=np.float32))
        shape = (len(planted_layers(plan.layers)), plan.n_kv_heads, tokens, plan.head_dim)
        self.positional = {name: self.rng.standard_normal(shape, dtype=np.float32) for name in (schema.KEYS, schema.VALUES)}

    @staticmethod
    def _bf16_bits(values: np.ndarray) -> np.ndarray:
        return values.astype(ml_dtypes.bfloat16).view(np.uint16)

    def payload(self, shard: int) -> ShardPayload:
        rows, tokens, planted = len(self.plan.shard_samples(shard)), self.tokens, len(planted_layers(self.plan.layers))
        arrays = empty_arrays(self.plan, rows, token_slots_for(tokens))
        hidden = arrays[schema.HIDDEN]
        start = int(self.rng.integers(0, self.hidden_pool.size - hidden.size))
        hidden[...] = self.hidden_pool[start : start + hidden.size].reshape(hidden.shape)
        for name in (schema.KEYS, schema.VALUES):
            region = arrays[name][:, :, :, :tokens]
            noise = self.rng.standard_normal(region.shape, dtype=np.float32)
            noise[:, :planted] = self.positional[name] + 0.05 * noise[:, :planted]
            region[...] = self._bf16_bits(noise)
        region = arrays[schema.FFN_TOPK_VALUE][:, :, :tokens]
        region[...] = self._bf16_bits(np.abs(self.rng.standard_normal(region.shape, dtype=np.float32)))
        arrays[schema.FFN_TOPK_INDEX][:, :, :tokens] = self.rng.integers(0, self.plan.ffn_units, region.shape)
        fill_token_table(arrays, tokens)
        return ShardPayload(shard, arrays, tokens)


def fill_token_table(arrays: dict[str, np.ndarray], tokens: int) -> None:
    """One 384 x 384 image: the base view's 27 x 27 grid first, then the remaining tokens on a 54-wide grid."""
    base = BASE_GRID * BASE_GRID
    for positions, part, width in ((np.arange(min(base, tokens)), ImagePart.BASE, BASE_GRID),
                                   (np.arange(base, tokens), ImagePart.GRID, 2 * BASE_GRID)):
        row, col = np.divmod(positions - positions[0], width) if len(positions) else (positions, positions)
        arrays[schema.IMAGE_PART][:, positions] = part
        arrays[schema.GRID_ROW][:, positions] = row
        arrays[schema.GRID_COL][:, positions] = col
        arrays[schema.TOKEN_BOX][:, positions] = np.stack([col, row, col + 1, row + 1], axis=1) / width
    arrays[schema.KIND][:, :tokens] = schema.TokenKind.IMAGE
    arrays[schema.IMAGE_INDEX][:, :tokens] = 0
    arrays[schema.POSITION][:, :tokens] = np.arange(tokens)
    arrays[schema.STATUS][:] = schema.SampleStatus.CAPTURED
    arrays[schema.N_TOKENS][:] = tokens
    arrays[schema.SEQ_LEN][:] = tokens
    arrays[schema.IMAGE_HEIGHT][:, 0] = IMAGE_SIZE
    arrays[schema.IMAGE_WIDTH][:, 0] = IMAGE_SIZE
