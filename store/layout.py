"""The concrete arrays of one store: shapes, dtypes, shards and inner chunks, from a capture plan.

Shards are aligned with the capture batch along `sample` and span whole token blocks, so each batch
is written as whole shards by one writer. Inner chunks are sized for the common read: one (layer,
head) across the batch's samples. The token axis is created at the model's capacity (whole blocks) and cut to
the longest captured sample when the capture completes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from store import schema

TOKEN_BLOCK = 256  # tokens per shard along the token axis; the token axis is a multiple of it
INNER_CHUNK_BYTES = 4 << 20  # target size of an inner chunk (the unit of a read)


@dataclass(frozen=True)
class ArraySpec:
    """One array: its dims, logical dtype, on-disk dtype and chunking (shard=None: no sharding)."""

    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    logical_dtype: str  # e.g. "bfloat16", "float16", "int32", "bool", "str"
    chunks: tuple[int, ...]
    shards: tuple[int, ...] | None
    fill_value: object
    compression: str = "zstd"  # "none" | "zstd"

    @property
    def storage_dtype(self) -> np.dtype | type:
        return str if self.logical_dtype == "str" else schema.storage_dtype(self.logical_dtype)

    @property
    def has_token_axis(self) -> bool:
        return schema.TOKEN in self.dims


@dataclass(frozen=True)
class StorePlan:
    """What a capture will write: sizes of every dimension except the growing token axis."""

    n_samples: int
    batch_size: int
    max_images: int
    layers: tuple[int, ...]  # decoder layers captured (K, V, FFN)
    streams: tuple[int, ...]  # residual streams captured (hidden)
    n_kv_heads: int
    head_dim: int
    d_model: int
    ffn_units: int
    ffn_topk: int
    compute_dtype: str  # "bfloat16" | "float16" | "float32"
    keys_prerope: bool
    ffn_dense: bool
    n_heads: int = 0  # query heads (needed with attention_last)
    attention_last: bool = False
    next_token_topk: int = 0  # the model's own top next tokens at the last position (0: none)
    compression: str = "none"  # activation arrays: "none" or "zstd" (level 1); small arrays always use zstd
    # Token slots the arrays are created with: enough for the longest possible sample, so that no writer ever
    # resizes an array while another writes (several ranks share a store). The finished store is cut to the
    # longest captured sample (`store.writer.finalize`); slots never written cost nothing on disk.
    token_capacity: int = TOKEN_BLOCK
    # Which of hidden, keys and values are written (`--arrays`; FFN top-k is `ffn_topk` > 0).
    selected: tuple[str, ...] = (schema.HIDDEN, schema.KEYS, schema.VALUES)

    @property
    def n_shards(self) -> int:
        return -(-self.n_samples // self.batch_size)

    def shards_of(self, rank: int, world_size: int) -> list[int]:
        """The shards rank `rank` of `world_size` writes: every world_size-th one, so ranks share the work evenly
        and no two write the same shard."""
        return list(range(rank, self.n_shards, world_size))

    def shard_samples(self, shard: int) -> range:
        start = shard * self.batch_size
        return range(start, min(start + self.batch_size, self.n_samples))

    def arrays(self, n_token_slots: int = TOKEN_BLOCK) -> list[ArraySpec]:
        """Every data array of the root group with a token axis of `n_token_slots` (a block multiple)."""
        b, t, tb = self.batch_size, n_token_slots, TOKEN_BLOCK
        sizes = {
            schema.SAMPLE: self.n_samples, schema.STREAM: len(self.streams), schema.LAYER: len(self.layers),
            schema.KV_HEAD: self.n_kv_heads, schema.TOKEN: t, schema.HEAD_DIM: self.head_dim,
            schema.D_MODEL: self.d_model, schema.FFN_K: self.ffn_topk, schema.FFN_UNIT: self.ffn_units,
            schema.BOX_COORD: 4, schema.IMAGE: self.max_images, schema.HEAD: self.n_heads,
            schema.NEXT_K: self.next_token_topk,
        }
        names = [name for name in (schema.HIDDEN, schema.KEYS, schema.VALUES) if name in self.selected]
        if self.ffn_topk:
            names += [schema.FFN_TOPK_INDEX, schema.FFN_TOPK_VALUE]
        if self.keys_prerope:
            names.append(schema.KEYS_PREROPE)
        if self.ffn_dense:
            names.append(schema.FFN_DENSE)
        if self.attention_last:
            names.append(schema.ATTENTION_LAST)
        if self.next_token_topk:
            names += [schema.NEXT_TOKEN_TOPK_INDEX, schema.NEXT_TOKEN_TOPK_LOGIT]
        specs = []
        for name in names:
            dims = schema.ACTIVATION_DIMS[name]
            shape = tuple(sizes[d] for d in dims)
            dtype = schema.FIXED_DTYPES.get(name, self.compute_dtype)
            # Shard: the whole batch, all layers/heads/features, one token block.
            shards = tuple(b if d == schema.SAMPLE else tb if d == schema.TOKEN else sizes[d] for d in dims)
            # Inner chunk: the batch, one layer/stream/head, as many tokens as fit the byte target.
            row_bytes = b * shape[-1] * np.dtype(schema.storage_dtype(dtype)).itemsize
            tokens = _largest_power_of_two_at_most(max(1, INNER_CHUNK_BYTES // row_bytes), tb)
            chunks = tuple(
                b if d == schema.SAMPLE else tokens if d == schema.TOKEN
                else 1 if d in (schema.STREAM, schema.LAYER, schema.KV_HEAD, schema.HEAD) else sizes[d]
                for d in dims
            )
            specs.append(ArraySpec(name, dims, shape, dtype, chunks, shards, 0, self.compression))
        for name, (dtype, fill) in schema.TOKEN_TABLE_FIELDS.items():
            specs.append(ArraySpec(name, (schema.SAMPLE, schema.TOKEN), (self.n_samples, t), dtype.name, (b, tb), None, fill))
        specs.append(ArraySpec(schema.TOKEN_BOX, (schema.SAMPLE, schema.TOKEN, schema.BOX_COORD),
                               (self.n_samples, t, 4), "float32", (b, tb, 4), None, float("nan")))
        if self.ffn_dense:
            specs.append(ArraySpec(schema.FFN_DENSE_SELECTED, (schema.SAMPLE, schema.TOKEN),
                                   (self.n_samples, t), "bool", (b, tb), None, False))
        for name, (dims, dtype, fill) in schema.SAMPLE_FIELDS.items():
            shape = tuple(sizes[d] for d in dims)
            chunks = tuple(b if d == schema.SAMPLE else sizes[d] for d in dims)
            logical = "str" if dtype == "str" else np.dtype(dtype).name
            specs.append(ArraySpec(name, dims, shape, logical, chunks, None, fill))
        return specs


def empty_arrays(plan: StorePlan, n_rows: int, n_token_slots: int) -> dict[str, np.ndarray]:
    """Every array of one shard payload, `n_rows` samples by `n_token_slots` tokens, filled with fill values in the
    on-disk dtype (strings as object arrays)."""
    arrays = {}
    for spec in plan.arrays(n_token_slots=n_token_slots):
        shape = (n_rows, *spec.shape[1:])
        dtype = object if spec.logical_dtype == "str" else spec.storage_dtype
        arrays[spec.name] = np.full(shape, spec.fill_value, dtype=dtype)
    return arrays


def token_slots_for(n_tokens: int) -> int:
    """The token-axis length (whole blocks) that holds `n_tokens`."""
    return max(1, -(-n_tokens // TOKEN_BLOCK)) * TOKEN_BLOCK


def _largest_power_of_two_at_most(value: int, cap: int) -> int:
    power = 1
    while power * 2 <= min(value, cap):
        power *= 2
    return power
