"""Check a store: completeness, shapes, dtypes, token-table consistency, provenance. Returns problems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import zarr

from store import location, schema
from store.layout import TOKEN_BLOCK, token_slots_for

REQUIRED_ARRAYS = [*(f for f in schema.TOKEN_TABLE_FIELDS if f not in schema.OPTIONAL_TOKEN_FIELDS), schema.TOKEN_BOX,
                   *schema.SAMPLE_FIELDS, schema.LAYER, schema.STREAM]
REQUIRED_PROVENANCE = ["model_dir", "model_config", "processor", "versions", "created"]


def open_group(path: str | Path) -> zarr.Group:
    """The store's root group, read-only: a local path, or a URL opened through fsspec."""
    try:
        return zarr.open_group(location.zarr_store(path, read_only=True), mode="r")
    except (FileNotFoundError, zarr.errors.GroupNotFoundError, ValueError):
        raise FileNotFoundError(f"{path} is not a Zarr store") from None


def validate(path: str | Path) -> list[str]:
    """All problems found in the store at `path` (empty list: valid)."""
    root = open_group(path)
    attrs = dict(root.attrs)
    if attrs.get(schema.ATTR_FORMAT) != schema.FORMAT_NAME:
        return [f"not an activation store (format attribute is {attrs.get(schema.ATTR_FORMAT)!r})"]
    problems: list[str] = []
    if attrs.get(schema.ATTR_SCHEMA_VERSION) != schema.SCHEMA_VERSION:
        problems.append(f"schema version {attrs.get(schema.ATTR_SCHEMA_VERSION)} (this reader: {schema.SCHEMA_VERSION})")
    recorded = attrs.get(schema.ATTR_CAPTURE_CONFIG) or {}
    provenance = attrs.get(schema.ATTR_PROVENANCE) or {}
    problems += [f"{schema.ATTR_CAPTURE_CONFIG} lacks {key!r}" for key in schema.REQUIRED_CONFIG_FIELDS
                 if key not in recorded]
    problems += [f"provenance lacks {key!r}" for key in REQUIRED_PROVENANCE if key not in provenance]
    if problems:
        return problems
    config = schema.CaptureConfig.from_attrs(recorded)
    members = set(root.array_keys())
    has_topk = bool(recorded.get("ffn_topk", 1))  # stores from before --ffn-topk 0 existed always kept top-k
    problems += [f"missing array {name!r}" for name in REQUIRED_ARRAYS + _selected_arrays(config, has_topk)
                 if name not in members]
    problems += [f"array {name!r} is stored but not in {schema.ATTR_CAPTURE_CONFIG} arrays {list(config.arrays)}"
                 for name in members if (choice := schema.selection_of(name)) and choice not in config.arrays]
    if problems:
        return problems

    sizes = {schema.SAMPLE: config.n_samples, schema.LAYER: len(config.layers), schema.STREAM: len(config.streams)}
    problems += _check_arrays(root, sorted(members), config, sizes)
    if schema.PROGRESS_GROUP not in root.group_keys():
        return [*problems, "incomplete: the store's creation was interrupted (no progress records); rerun the capture"]
    problems += _check_completion(root, attrs, sizes)
    problems += _check_samples(root)
    problems += _check_lens(root, config, sizes, has_topk or bool(config.ffn_dense_tokens))
    return problems


def _selected_arrays(config: schema.CaptureConfig, has_topk: bool) -> list[str]:
    """The activation arrays `--arrays` asked for (FFN top-k only with --ffn-topk above 0)."""
    return [name for choice in config.arrays if choice != "ffn" or has_topk for name in schema.ARRAY_SELECTION[choice]]


def _check_arrays(root: zarr.Group, names: list[str], config: schema.CaptureConfig, sizes: dict[str, int]) -> list[str]:
    """Dimension names, sizes (recorded into `sizes` as they are met), token blocks, dtypes of every array."""
    problems = []
    logical = config.compute_dtype
    for name in names:
        array = root[name]
        dims = array.metadata.dimension_names
        if dims is None or len(dims) != array.ndim:
            problems.append(f"{name}: dimension_names missing or of wrong length")
            continue
        for dim, size in zip(dims, array.shape):
            if dim in sizes and sizes[dim] != size:
                problems.append(f"{name}: {dim} has {size} entries, expected {sizes[dim]}")
            sizes.setdefault(dim, size)
        if schema.TOKEN in dims and array.shape[dims.index(schema.TOKEN)] % TOKEN_BLOCK:
            problems.append(f"{name}: token axis {array.shape[dims.index(schema.TOKEN)]} is not a multiple of {TOKEN_BLOCK}")
        if name in schema.ACTIVATION_DIMS:
            if tuple(dims) != schema.ACTIVATION_DIMS[name]:
                problems.append(f"{name}: dims {dims}, expected {schema.ACTIVATION_DIMS[name]}")
            wanted = schema.storage_dtype(schema.FIXED_DTYPES.get(name, logical))
            if array.dtype != wanted:
                problems.append(f"{name}: stored as {array.dtype}, expected {wanted} for compute dtype {logical}")
            if logical in schema.LOGICAL_TO_STORAGE and name not in schema.FIXED_DTYPES and \
                    array.attrs.get(schema.ATTR_LOGICAL_DTYPE) != logical:
                problems.append(f"{name}: missing {schema.ATTR_LOGICAL_DTYPE}={logical!r} attribute")
    if list(root[schema.LAYER][...]) != list(config.layers):
        problems.append(f"layer coordinate differs from {schema.ATTR_CAPTURE_CONFIG} layers")
    if list(root[schema.STREAM][...]) != list(config.streams):
        problems.append(f"stream coordinate differs from {schema.ATTR_CAPTURE_CONFIG} streams")
    return problems


def _check_completion(root: zarr.Group, attrs: dict, sizes: dict[str, int]) -> list[str]:
    """Every shard written, the store finalised, and its token axis cut to the longest sample."""
    done = root[schema.PROGRESS_GROUP][schema.SHARD_COMPLETE][...]
    if not done.all():
        missing = np.flatnonzero(done == 0)
        return [f"incomplete: {len(missing)} of {len(done)} shards not written (first: {missing[0]}); "
                "rerun the capture command to resume"]
    if schema.ATTR_CAPTURE_COMPLETE not in attrs:
        return ["incomplete: every shard is written but the store was never finalised; rerun the capture "
                "command (any rank) to finish it"]
    slots = attrs[schema.ATTR_CAPTURE_COMPLETE].get(schema.ATTR_TOKEN_SLOTS)
    longest = int(root[schema.N_TOKENS][...].max(initial=0))
    if slots != token_slots_for(longest) or sizes.get(schema.TOKEN) != slots:
        return [f"token axis {sizes.get(schema.TOKEN)} (recorded {slots}) does not fit the longest sample "
                f"({longest} tokens)"]
    return []


def _check_samples(root: zarr.Group) -> list[str]:
    problems = []
    status = root[schema.STATUS][...]
    n_tokens = root[schema.N_TOKENS][...]
    seq_len = root[schema.SEQ_LEN][...]
    kind = root[schema.KIND][...]
    position = root[schema.POSITION][...]
    reasons = root[schema.SKIP_REASON][...]
    for index in np.flatnonzero(status == schema.SampleStatus.PENDING)[:5]:
        problems.append(f"sample {index}: never captured nor skipped")
    for index in np.flatnonzero(status == schema.SampleStatus.CAPTURED):
        n = n_tokens[index]
        if n < 1 or n > seq_len[index]:
            problems.append(f"sample {index}: n_tokens={n} with seq_len={seq_len[index]}")
        elif (kind[index, :n] == schema.TokenKind.PAD).any() or (kind[index, n:] != schema.TokenKind.PAD).any():
            problems.append(f"sample {index}: token kinds disagree with n_tokens={n}")
        elif not (np.diff(position[index, :n]) > 0).all() or position[index, n - 1] >= seq_len[index]:
            problems.append(f"sample {index}: token positions not increasing within the sequence")
    for index in np.flatnonzero(status == schema.SampleStatus.SKIPPED):
        if not reasons[index]:
            problems.append(f"sample {index}: skipped without a reason")
    return problems


def _check_lens(root: zarr.Group, config: schema.CaptureConfig, sizes: dict[str, int], with_ffn: bool) -> list[str]:
    if schema.LENS_GROUP not in root.group_keys():
        return ["missing lens/ group"]
    lens = root[schema.LENS_GROUP]
    problems = []
    required = [schema.LENS_NORM_WEIGHT, schema.LENS_UNEMBEDDING, schema.LENS_VOCABULARY]
    for name in required + ([schema.LENS_DOWN_PROJ] if with_ffn else []):
        if name not in lens.array_keys():
            problems.append(f"lens/ lacks {name!r}")
    if problems:
        return problems
    if schema.ATTR_NORM_EPS not in lens.attrs:
        problems.append("lens/ lacks the final norm epsilon attribute")
    d_model = sizes.get(schema.D_MODEL, lens[schema.LENS_NORM_WEIGHT].shape[0])  # no hidden states: the lens's own
    if lens[schema.LENS_NORM_WEIGHT].shape != (d_model,):
        problems.append(f"lens/{schema.LENS_NORM_WEIGHT}: shape {lens[schema.LENS_NORM_WEIGHT].shape}, d_model {d_model}")
    vocab, width = lens[schema.LENS_UNEMBEDDING].shape
    if width != d_model or lens[schema.LENS_VOCABULARY].shape != (vocab,):
        problems.append("lens/: unembedding and vocabulary shapes disagree with d_model or each other")
    if with_ffn and lens[schema.LENS_DOWN_PROJ].shape[:2] != (len(config.layers), d_model):
        problems.append(f"lens/{schema.LENS_DOWN_PROJ}: shape {lens[schema.LENS_DOWN_PROJ].shape} does not match layers x d_model")
    return problems
