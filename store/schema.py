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

ACTIVATION_DIMS: dict[str, tuple[str, ...]] = {
    HIDDEN: (SAMPLE, STREAM, TOKEN, D_MODEL),
    KEYS: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    VALUES: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    KEYS_PREROPE: (SAMPLE, LAYER, KV_HEAD, TOKEN, HEAD_DIM),
    FFN_TOPK_INDEX: (SAMPLE, LAYER, TOKEN, FFN_K),
    FFN_TOPK_VALUE: (SAMPLE, LAYER, TOKEN, FFN_K),
    FFN_DENSE: (SAMPLE, LAYER, TOKEN, FFN_UNIT),
    ATTENTION_LAST: (SAMPLE, LAYER, HEAD, TOKEN),
}
# Activation arrays kept in a fixed dtype rather than the compute dtype.
FIXED_DTYPES: dict[str, str] = {FFN_TOPK_INDEX: "int32", ATTENTION_LAST: "float32"}


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
}
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
