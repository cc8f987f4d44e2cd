"""The capture configuration: everything that determines a store's arrays, as one typed object.

Capture builds it, the writer records it in the root attribute `capture_config` (and refuses to resume a store
recorded with another), and validation, catalogs, `store info` and the analyses read it back with
`CaptureConfig.from_attrs`. Provenance (versions, user, creation time) is kept apart: it informs, it never
decides whether two captures are the same.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from store import schema

FFN_TOPK_ORDER = "largest signed coefficient first"
KEYS_ROPE = "post-RoPE, as held in the KV cache"
# Fields every store records; the others take their defaults when an older store lacks them.
REQUIRED = ("model", "revision", "compute_dtype", "dataset", "layers", "streams", "tokens", "n_samples")


class ConfigError(ValueError):
    """A capture_config attribute that is missing fields or holds the wrong types (one clear line)."""


@dataclass(frozen=True, kw_only=True)
class CaptureConfig:
    """What was captured and how (fields in the order they are recorded)."""

    model: str  # as the user named it: alias, tiny model, hub id or directory
    hub_id: str | None = None
    revision: str  # commit hash, "local", "tiny-build-vN", ...
    family: str = ""  # the family adapter that read the model
    compute_dtype: str  # "bfloat16" | "float16" | "float32"
    device_type: str = "cpu"
    dataset: str
    data_root: str = ""
    split: str | None = None
    limit: int | None = None
    n_samples: int
    sample_ids_sha256: str = ""  # of the sample ids joined by newlines: the exact records captured
    layers: tuple[int, ...]  # decoder layers of keys, values and FFN coefficients
    streams: tuple[int, ...]  # residual streams of `hidden`
    tokens: tuple[str, ...]  # token sets stored (schema.TokenSet values)
    ffn_topk: int = 0
    ffn_topk_order: str = FFN_TOPK_ORDER
    ffn_dense_tokens: tuple[str, ...] | None = None
    keys_prerope: bool = False
    attention_last: bool = False
    keys_rope: str = KEYS_ROPE
    samples: str = "images"  # one sample per image record, box annotation or category name
    text_only: bool = False
    prompt: str = ""
    template: str = "chat"
    prefix: str | None = None
    prompt_set: str | None = None
    visual_prefix: bool = False
    batch_size: int = 1  # samples per shard
    forward_batch: int = 1
    token_block: int = 256
    compression: str = "none"
    keep_mantissa_bits: int | None = None
    max_relative_error: float | None = None  # bound of the lossy rounding, when there is one
    schema_version: int = schema.SCHEMA_VERSION
    intervention: dict[str, Any] | None = None  # the spec of an intervened capture

    def to_attrs(self) -> dict[str, Any]:
        """The JSON object recorded as the store's `capture_config` (tuples as lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> CaptureConfig:
        """The config recorded in a store; ConfigError when a required field is missing."""
        if not isinstance(attrs, dict):
            raise ConfigError(f"{schema.ATTR_CAPTURE_CONFIG} is not a JSON object")
        missing = [name for name in REQUIRED if name not in attrs]
        if missing:
            raise ConfigError(f"{schema.ATTR_CAPTURE_CONFIG} lacks {', '.join(map(repr, missing))}")
        known = {f.name for f in fields(cls)}
        values = {name: _typed(name, value) for name, value in attrs.items() if name in known}
        return cls(**values)

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> CaptureConfig:
        """The config of a store from its root attributes (e.g. `ds.attrs` of `store.reader.open`)."""
        return cls.from_attrs(attrs.get(schema.ATTR_CAPTURE_CONFIG) or {})


TUPLE_FIELDS = ("layers", "streams", "tokens", "ffn_dense_tokens")


def _typed(name: str, value: Any) -> Any:
    if name in TUPLE_FIELDS and value is not None:
        return tuple(value)
    return value


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def differing_fields(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """Names of the fields whose recorded values differ between two `capture_config` attributes."""
    stored = stored or {}
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
