"""The on-disk schema of an activation store: every array name, dimension name, dtype rule and attribute.

Other modules import names from here instead of spelling strings, so the layout is defined once.

Layout (Zarr v3, one store per model x dataset x capture settings)::

    hidden           (sample, stream, token, d_model)          compute dtype
    keys, values     (sample, layer, kv_head, token, head_dim)  compute dtype (post-RoPE, as cached)
    keys_prerope     (sample, layer, kv_head, token, head_dim)  optional
    ffn_topk_index   (sample, layer, token, ffn_k)              int32
    ffn_topk_value   (sample, layer, token, ffn_k)              compute dtype
    ffn_dense        (sample, layer, token, ffn_unit)           optional, only rows of ffn_dense_selected
    attention_last   (sample, layer, head, token)               optional float32: the last position's attention row
    next_token_topk_index, _logit  (sample, next_k)             optional int32 / float32: the model's own top-k
                                                                next tokens at the last position, best first
    token table      (sample, token)                            token_id, position, kind, image_index, ...
    token_box        (sample, token, box_coord)                 float32, normalised x0, y0, x1, y1
    per sample       (sample,) / (sample, image)                sample_id, status, n_tokens, prompt, ...
    lens/            final norm weight + eps, unembedding, vocabulary, down_proj (and o_proj) weights
    progress/        shard_complete (shard,) -- per-shard completion records, written last

The root attribute `capture_complete` is written once every shard is complete (by whichever capture process
finishes last); until then the token axis has the model's full capacity.

`stream` i is the residual stream entering decoder layer i (0 is the embedding output with the
projected image features in place); stream n_layers is the raw output of the last layer, *before*
the final norm (transformers' last `hidden_states` entry is after the norm).
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np

SCHEMA_VERSION = 1
FORMAT_NAME = "vlm-activation-store"

# Dimensions
SAMPLE = "sample"
STREAM = "stream"
LAYER = "layer"
KV_HEAD = "kv_head"
HEAD = "head"  # query heads (GQA: head h reads KV head h // (heads / kv_heads))
ATTN_DIM = "attn_dim"  # heads x head_dim, the input width of o_proj
TOKEN = "token"
HEAD_DIM = "head_dim"
D_MODEL = "d_model"
FFN_K = "ffn_k"
NEXT_K = "next_k"  # the model's top next tokens at the last position
FFN_UNIT = "ffn_unit"
BOX_COORD = "box_coord"
IMAGE = "image"
VOCAB = "vocab"
SHARD = "shard"

# Activation arrays
HIDDEN = "hidden"
KEYS = "keys"
VALUES = "values"
KEYS_PREROPE = "keys_prerope"
FFN_TOPK_INDEX = "ffn_topk_index"
FFN_TOPK_VALUE = "ffn_topk_value"
FFN_DENSE = "ffn_dense"
ATTENTION_LAST = "attention_last"
NEXT_TOKEN_TOPK_INDEX = "next_token_topk_index"
NEXT_TOKEN_TOPK_LOGIT = "next_token_topk_logit"

ACTIVATION_DIMS: dict[str, tuple[str, ...]] = {
    HIDDEN: (SAMPLE, STREAM, TOKEN, D_MODEL),
    KEYS: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    VALUES: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    KEYS_PREROPE: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    FFN_TOPK_INDEX: (SAMPLE, LAYER, TOKEN, FFN_K),
    FFN_TOPK_VALUE: (SAMPLE, LAYER, TOKEN, FFN_K),
    FFN_DENSE: (SAMPLE, LAYER, TOKEN, FFN_UNIT),
    ATTENTION_LAST: (SAMPLE, LAYER, HEAD, TOKEN),
    NEXT_TOKEN_TOPK_INDEX: (SAMPLE, NEXT_K),
    NEXT_TOKEN_TOPK_LOGIT: (SAMPLE, NEXT_K),
}
# `--arrays`: the main activation arrays a capture may keep, by the name the option takes (keys alone serve Liu et
# al.'s variance; hidden states the cosine, lens and norm analyses). "ffn" is the FFN top-k pair (with --ffn-topk > 0).
ARRAY_SELECTION: dict[str, tuple[str, ...]] = {
    HIDDEN: (HIDDEN,), KEYS: (KEYS,), VALUES: (VALUES,), "ffn": (FFN_TOPK_INDEX, FFN_TOPK_VALUE)}
DEFAULT_ARRAYS = tuple(ARRAY_SELECTION)  # every one: what a capture keeps unless told otherwise
# The capture option that stores each optional array not in ARRAY_SELECTION.
OPTIONAL_ARRAY_OPTIONS: dict[str, str] = {
    KEYS_PREROPE: "--keys-prerope", FFN_DENSE: "--ffn-dense-tokens SETS", ATTENTION_LAST: "--attention-last",
    NEXT_TOKEN_TOPK_INDEX: "--next-token-topk K", NEXT_TOKEN_TOPK_LOGIT: "--next-token-topk K"}


def selection_of(array: str) -> str | None:
    """The `--arrays` value that captures `array` (None for arrays kept by another option)."""
    return next((choice for choice, names in ARRAY_SELECTION.items() if array in names), None)


# Activation arrays kept in a fixed dtype rather than the compute dtype.
FIXED_DTYPES: dict[str, str] = {FFN_TOPK_INDEX: "int32", ATTENTION_LAST: "float32", NEXT_TOKEN_TOPK_INDEX: "int32",
                                NEXT_TOKEN_TOPK_LOGIT: "float32"}


class TokenKind(enum.IntEnum):
    """What a stored token is. PAD marks token slots beyond a sample's length."""

    PAD = -1
    TEXT = 0
    SPECIAL = 1
    IMAGE = 2
    IMAGE_NEWLINE = 3


class ImagePart(enum.IntEnum):
    """Which view of an image a token comes from (anyres layouts have two)."""

    NONE = -1
    BASE = 0  # the whole image resized to one tile
    GRID = 1  # the high-resolution tile grid (letterbox padding removed)


# Token table fields, all with dims (sample, token).
TOKEN_ID = "token_id"
POSITION = "position"  # index in the full input sequence
KIND = "kind"  # TokenKind
IMAGE_INDEX = "image_index"
IMAGE_PART = "image_part"  # ImagePart
TILE_ROW = "tile_row"  # tile of the high-resolution grid; -1 for the base view
TILE_COL = "tile_col"
PATCH_ROW = "patch_row"  # patch within its tile (nearest patch when downsampled)
PATCH_COL = "patch_col"
GRID_ROW = "grid_row"  # row/col in the image's packed token grid
GRID_COL = "grid_col"
DOWNSAMPLED = "downsampled"  # token mixes several patches (OneVision anyres_max)
USER_TEXT = "user_text"  # token lies in the user's text (the prompt's {text}), not the template, a prefix or a bbox

# Token table: name -> (numpy dtype, fill value).
TOKEN_TABLE_FIELDS: dict[str, tuple[np.dtype, object]] = {
    TOKEN_ID: (np.dtype("int32"), -1),
    POSITION: (np.dtype("int32"), -1),
    KIND: (np.dtype("int8"), int(TokenKind.PAD)),
    IMAGE_INDEX: (np.dtype("int16"), -1),
    IMAGE_PART: (np.dtype("int8"), int(ImagePart.NONE)),
    TILE_ROW: (np.dtype("int16"), -1),
    TILE_COL: (np.dtype("int16"), -1),
    PATCH_ROW: (np.dtype("int16"), -1),
    PATCH_COL: (np.dtype("int16"), -1),
    GRID_ROW: (np.dtype("int16"), -1),
    GRID_COL: (np.dtype("int16"), -1),
    DOWNSAMPLED: (np.dtype("bool"), False),
    USER_TEXT: (np.dtype("bool"), False),
}
# Token table fields that stores written before they existed lack (readers must not require them).
OPTIONAL_TOKEN_FIELDS = (USER_TEXT,)
# The fields an image layout sets (the others are filled from the input ids).
IMAGE_LAYOUT_FIELDS = (KIND, IMAGE_PART, TILE_ROW, TILE_COL, PATCH_ROW, PATCH_COL, GRID_ROW, GRID_COL, DOWNSAMPLED)
TOKEN_BOX = "token_box"  # (sample, token, box_coord): x0, y0, x1, y1 in [0, 1] of the original image
FFN_DENSE_SELECTED = "ffn_dense_selected"  # (sample, token) bool: rows of ffn_dense that hold data


class SampleStatus(enum.IntEnum):
    """Outcome of one dataset record."""

    PENDING = 0
    CAPTURED = 1
    SKIPPED = 2


# Per-sample fields
SAMPLE_ID = "sample_id"
STATUS = "status"  # SampleStatus
SKIP_REASON = "skip_reason"
N_TOKENS = "n_tokens"  # stored tokens (valid prefix of the token axis)
SEQ_LEN = "seq_len"  # full input sequence length
PROMPT = "prompt"  # the exact text fed to the processor
ANNOTATION = "annotation"  # JSON: the sample's annotation (see `store.annotation`)
IMAGE_PATH = "image_path"
IMAGE_HEIGHT = "image_height"
IMAGE_WIDTH = "image_width"

# Per-sample arrays: name -> (dims, numpy dtype or "str", fill value)
SAMPLE_FIELDS: dict[str, tuple[tuple[str, ...], object, object]] = {
    SAMPLE_ID: ((SAMPLE,), "str", ""),
    STATUS: ((SAMPLE,), np.dtype("int8"), int(SampleStatus.PENDING)),
    SKIP_REASON: ((SAMPLE,), "str", ""),
    N_TOKENS: ((SAMPLE,), np.dtype("int32"), 0),
    SEQ_LEN: ((SAMPLE,), np.dtype("int32"), 0),
    PROMPT: ((SAMPLE,), "str", ""),
    ANNOTATION: ((SAMPLE,), "str", ""),
    IMAGE_PATH: ((SAMPLE, IMAGE), "str", ""),
    IMAGE_HEIGHT: ((SAMPLE, IMAGE), np.dtype("int32"), 0),
    IMAGE_WIDTH: ((SAMPLE, IMAGE), np.dtype("int32"), 0),
}

# lens/ group
LENS_GROUP = "lens"
LENS_NORM_WEIGHT = "final_norm_weight"  # (d_model,)
LENS_UNEMBEDDING = "unembedding"  # (vocab, d_model)
LENS_UNEMBEDDING_BIAS = "unembedding_bias"  # (vocab,) when the head has one
LENS_VOCABULARY = "vocabulary"  # (vocab,) str: each id decoded alone
LENS_VOCABULARY_RAW = "vocabulary_raw"  # (vocab,) str: the tokenizer's own token strings (byte-level symbols)
LENS_DOWN_PROJ = "down_proj_weight"  # (layer, d_model, ffn_unit)
LENS_O_PROJ = "o_proj_weight"  # (layer, d_model, attn_dim), with attention rows

# progress/ group
PROGRESS_GROUP = "progress"
SHARD_COMPLETE = "shard_complete"  # (shard,) int8, 1 once every array of the shard is written

# Attributes
ATTR_LOGICAL_DTYPE = "logical_dtype"  # on arrays whose bits are stored in another dtype
ATTR_FORMAT = "format"
ATTR_SCHEMA_VERSION = "schema_version"
ATTR_CAPTURE_CONFIG = "capture_config"  # everything that determines the arrays; checked on resume
ATTR_PROVENANCE = "provenance"  # model, revision, versions, creation time: informative only
ATTR_CAPTURE_COMPLETE = "capture_complete"  # written last, once every shard is: {"finished", "token_slots"}
ATTR_TOKEN_KINDS = "token_kinds"
ATTR_IMAGE_PARTS = "image_parts"
ATTR_SAMPLE_STATUSES = "sample_statuses"
ATTR_NORM_EPS = "eps"
ATTR_NORM_KIND = "norm_kind"
ATTR_FINISHED = "finished"  # in capture_complete: when the store was finalised
ATTR_TOKEN_SLOTS = "token_slots"  # in capture_complete: the token axis length of the finished store


class TokenSet(enum.StrEnum):
    """Token sets a capture stores (`--tokens`), recorded in the capture config."""

    ALL = "all"
    IMAGE = "image"  # image and image-newline tokens
    TEXT = "text"  # text and special tokens
    LAST = "last"  # the final position

# Dtype rule: compute dtypes zarr cannot hold are stored as raw bits of the same width.
LOGICAL_TO_STORAGE = {"bfloat16": np.dtype("uint16")}


def storage_dtype(logical_dtype: str) -> np.dtype:
    """The on-disk dtype for a logical (compute) dtype name such as 'bfloat16' or 'float16'."""
    if logical_dtype in LOGICAL_TO_STORAGE:
        return LOGICAL_TO_STORAGE[logical_dtype]
    return np.dtype(logical_dtype)


# ---------------------------------------------------------------------------------------------------------
# The capture configuration (root attribute `capture_config`): everything that determines a store's arrays, as one
# typed object. Capture builds it, the writer records it (and refuses to resume a store recorded with another);
# validation, catalogs, `store info` and the analyses read it back with `CaptureConfig.from_attrs` / `.of`.
# Provenance (versions, user, creation time) is kept apart: it informs, it never decides whether two captures are
# the same.

FFN_TOPK_ORDER = "largest signed coefficient first"
FFN_TOPK_ORDER_ABS = "largest absolute coefficient first (values keep their sign)"
FFN_TOPK_ORDERS = {"signed": FFN_TOPK_ORDER, "abs": FFN_TOPK_ORDER_ABS}  # --ffn-topk-by -> recorded ffn_topk_order
KEYS_ROPE = "post-RoPE, as held in the KV cache"
# Fields every store records; the others take their defaults when an older store lacks them.
REQUIRED_CONFIG_FIELDS = ("model", "revision", "compute_dtype", "dataset", "layers", "streams", "tokens", "n_samples")


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
    compute_dtype_note: str | None = None  # why --dtype auto computed in another dtype than the checkpoint's
    device_type: str = "cpu"
    dataset: str
    data_root: str = ""
    split: str | None = None
    subset: str | None = None  # the part of the data set read (--subset)
    limit: int | None = None
    n_samples: int
    sample_ids_sha256: str = ""  # of the sample ids joined by newlines: the exact records captured
    layers: tuple[int, ...]  # decoder layers of keys, values and FFN coefficients
    streams: tuple[int, ...]  # residual streams of `hidden` (none when hidden is not captured)
    arrays: tuple[str, ...] = DEFAULT_ARRAYS  # --arrays: the ARRAY_SELECTION entries requested
    tokens: tuple[str, ...]  # token sets stored (schema.TokenSet values)
    ffn_topk: int = 0
    ffn_topk_order: str = FFN_TOPK_ORDER
    ffn_dense_tokens: tuple[str, ...] | None = None
    keys_prerope: bool = False
    attention_last: bool = False
    next_token_topk: int = 0  # the model's own top next tokens kept at the last position
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
    schema_version: int = SCHEMA_VERSION
    intervention: dict[str, Any] | None = None  # the spec of an intervened capture

    def to_attrs(self) -> dict[str, Any]:
        """The JSON object recorded as the store's `capture_config` (tuples as lists)."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_attrs(cls, attrs: dict[str, Any]) -> CaptureConfig:
        """The config recorded in a store; ConfigError when a required field is missing."""
        if not isinstance(attrs, dict):
            raise ConfigError(f"{ATTR_CAPTURE_CONFIG} is not a JSON object")
        missing = [name for name in REQUIRED_CONFIG_FIELDS if name not in attrs]
        if missing:
            raise ConfigError(f"{ATTR_CAPTURE_CONFIG} lacks {', '.join(map(repr, missing))}")
        known = {f.name for f in fields(cls)}
        values = {name: _typed(name, value) for name, value in attrs.items() if name in known}
        return cls(**values)

    def prompt_settings(self) -> dict[str, Any]:
        """The fields that decide a sample's prompt (`PROMPT_FIELDS`)."""
        return {name: getattr(self, name) for name in PROMPT_FIELDS}

    @classmethod
    def of(cls, attrs: dict[str, Any]) -> CaptureConfig:
        """The config of a store from its root attributes (e.g. `ds.attrs` of `store.reader.open`)."""
        return cls.from_attrs(attrs.get(ATTR_CAPTURE_CONFIG) or {})


TUPLE_FIELDS = ("layers", "streams", "tokens", "ffn_dense_tokens", "arrays")
# The fields that decide a sample's prompt (a catalog row hashes them).
PROMPT_FIELDS = ("template", "prefix", "prompt", "prompt_set", "visual_prefix", "samples", "text_only")


def _typed(name: str, value: Any) -> Any:
    if name in TUPLE_FIELDS and value is not None:
        return tuple(value)
    return value


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def differing_fields(stored: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """Names of the fields whose recorded values differ between two `capture_config` attributes. A field the
    stored config lacks (recorded before the field existed) counts as its default value."""
    defaults = {f.name: _jsonable(f.default) for f in fields(CaptureConfig) if f.default is not MISSING}
    stored = {**{k: v for k, v in defaults.items() if k in wanted}, **(stored or {})}
    return sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
