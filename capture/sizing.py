"""Tokens per image and bytes per sample of a capture, from a model's config alone (no weights).

`python -m capture.sizing` prints a markdown table for every registered model at one image size (`--arrays` and
`--streams` choose the arrays counted, as in a capture). Image-token counts come from running the family's real
processor and token-table code on a blank image of that size; bytes are the uncompressed payload of the store's
arrays for one sample.

`python -m capture.sizing --model M --dataset D ...` (any `python -m capture` options) sizes the store that capture
would write, without weights or forward passes: every sample is prepared as the capture prepares it (processor and
token table), and the activation arrays' shards are counted as the writer stores them (whole token blocks, shard
indices); uncompressed, that is the bytes on disk exactly.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from capture.errors import CaptureError
from capture.families import ADAPTERS, adapter_for_config
from capture.loading import ModelFrontEnd
from capture.registry import ALIASES, REAL_PARTS_MODELS, TINY_MODELS, TOY_MODELS
from capture.samples import prepare_sample
from capture.selection import parse_arrays, parse_streams
from store import schema
from store.layout import TOKEN_BLOCK, ArraySpec, StorePlan, token_slots_for

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
SHARD_INDEX_ENTRY_BYTES = 16  # zarr v3 sharding: (offset, length) as two uint64 per inner chunk, then a crc32c
SHARD_INDEX_CHECKSUM_BYTES = 4
CAPTURE_FLAGS = ("--model", "--dataset")  # their presence: size one capture (the capture's own options)


@dataclass(frozen=True)
class SampleSize:
    """One model's footprint for one image of `height` x `width` pixels (`--tokens image`, all layers; arrays left
    out of the selection count 0 bytes)."""

    model: str
    config_source: str
    image_tokens: int
    layers: int
    kv_heads: int
    head_dim: int
    d_model: int
    ffn_units: int
    bytes_hidden: int
    bytes_keys_values: int
    bytes_ffn_topk: int
    bytes_token_table: int
    bytes_ffn_dense: int  # extra, with --ffn-dense-tokens image

    @property
    def bytes_total(self) -> int:
        return self.bytes_hidden + self.bytes_keys_values + self.bytes_ffn_topk + self.bytes_token_table


def model_front_end(name: str) -> tuple[ModelFrontEnd, str]:
    """The front end (config, processor, adapter) of `name` without loading weights, and where its config came from."""
    if name in TINY_MODELS or name in TOY_MODELS or name in REAL_PARTS_MODELS:
        from capture.loading import open_model, resolve_model

        loaded = open_model(resolve_model(name), "auto", "cpu")
        source = "tiny build" if name in TINY_MODELS else "toy build" if name in TOY_MODELS else "real-parts build"
        return loaded, source
    if name not in ALIASES:
        known = ", ".join([*ALIASES, *TINY_MODELS, *TOY_MODELS, *REAL_PARTS_MODELS])
        raise CaptureError(f"sizing knows the registered models only ({known})")
    config, source = _cached_config(ALIASES[name].hub_id)
    if config is None:
        config, source = ADAPTERS[ALIASES[name].family].reference_config(name), "reference config"
    adapter = adapter_for_config(config)
    processor = adapter.build_processor(adapter.tiny_tokenizer(), config)
    # the stand-in tokenizer numbers its image token differently from the released vocabulary
    config.image_token_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    return ModelFrontEnd(config, processor, adapter), source


def _cached_config(hub_id: str) -> tuple[Any, str]:
    """The checkpoint's own config.json when the HF cache has it (weights not needed)."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    from transformers import AutoConfig

    try:
        path = hf_hub_download(hub_id, "config.json", local_files_only=True)
    except (LocalEntryNotFoundError, OSError):
        return None, ""
    return AutoConfig.from_pretrained(path.rsplit("/", 1)[0], local_files_only=True), "HF cache"


def sample_size(name: str, height: int, width: int, dtype: str = "bfloat16", ffn_topk: int = 16,
                arrays: tuple[str, ...] = schema.DEFAULT_ARRAYS, streams: str | None = None) -> SampleSize:
    """Tokens and bytes of one `height` x `width` image sample of model `name`, keeping `arrays` (`--arrays`
    values) and hidden `streams` (a `--streams` spec; None: every layer's)."""
    model, source = model_front_end(name)
    text = model.adapter.text_config(model.config)
    image = Image.new("RGB", (width, height), (127, 127, 127))
    # raises if the layout and the processor disagree
    prepared = prepare_sample(model, model.adapter.image_placeholder(model.processor), [image])
    n_image = int((prepared.table.fields[schema.IMAGE_INDEX] >= 0).sum())
    n_layers = text.num_hidden_layers
    layers = tuple(range(n_layers))
    head_dim = model.adapter.head_dim(model.config)
    plan = StorePlan(
        n_samples=1, batch_size=1, max_images=1, layers=layers,
        streams=parse_streams(streams, layers, n_layers) if schema.HIDDEN in arrays else (),
        n_kv_heads=text.num_key_value_heads, head_dim=head_dim, d_model=text.hidden_size,
        ffn_units=text.intermediate_size, ffn_topk=ffn_topk if "ffn" in arrays else 0, compute_dtype=dtype,
        keys_prerope=False, ffn_dense=True, selected=tuple(a for a in arrays if a != "ffn"),
    )
    sizes = {spec.name: _bytes(spec) for spec in plan.arrays(n_token_slots=n_image) if spec.has_token_axis}
    return SampleSize(
        model=name, config_source=source, image_tokens=n_image, layers=n_layers, kv_heads=text.num_key_value_heads,
        head_dim=head_dim, d_model=text.hidden_size, ffn_units=text.intermediate_size,
        bytes_hidden=sizes.get(schema.HIDDEN, 0),
        bytes_keys_values=sizes.get(schema.KEYS, 0) + sizes.get(schema.VALUES, 0),
        bytes_ffn_topk=sizes.get(schema.FFN_TOPK_INDEX, 0) + sizes.get(schema.FFN_TOPK_VALUE, 0),
        bytes_token_table=sum(v for k, v in sizes.items() if k not in schema.ACTIVATION_DIMS),
        bytes_ffn_dense=sizes[schema.FFN_DENSE],
    )


def _bytes(spec: Any) -> int:
    return int(np.prod(spec.shape[1:])) * np.dtype(spec.storage_dtype).itemsize


def markdown_table(rows: list[SampleSize], height: int, width: int, selection: str = "") -> str:
    mb = 1e6
    lines = [
        f"Per sample: one {width}x{height} image, `--tokens image`, all layers{selection}, bf16, FFN top-16, "
        "uncompressed.",
        "",
        "| model | config | layers x KV heads x head dim | image tokens | hidden MB | K+V MB | FFN top-k MB | total MB "
        "| + dense FFN MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.config_source} | {r.layers} x {r.kv_heads} x {r.head_dim} | {r.image_tokens} "
            f"| {r.bytes_hidden / mb:.2f} | {r.bytes_keys_values / mb:.2f} | {r.bytes_ffn_topk / mb:.2f} "
            f"| {r.bytes_total / mb:.2f} | {r.bytes_ffn_dense / mb:.2f} |"
        )
    return "\n".join(lines)


def shard_bytes(spec: ArraySpec) -> int:
    """Bytes of one uncompressed shard of a sharded array: its inner chunks (edge chunks are stored whole) and the
    shard index."""
    inner = int(np.prod([shard // chunk for shard, chunk in zip(spec.shards, spec.chunks, strict=True)]))
    data = int(np.prod(spec.shards)) * np.dtype(spec.storage_dtype).itemsize
    return data + inner * SHARD_INDEX_ENTRY_BYTES + SHARD_INDEX_CHECKSUM_BYTES


def activation_bytes(plan: StorePlan, stored_tokens: list[int]) -> dict[str, int]:
    """Bytes on disk of each activation array of a store of `plan` whose samples store `stored_tokens` tokens (0 for
    a skipped one), as the writer stores them: every shard padded to whole token blocks, every block a whole shard.
    Exact without compression; an upper bound with zstd."""
    blocks = sum(token_slots_for(max((stored_tokens[i] for i in plan.shard_samples(shard)), default=0)) // TOKEN_BLOCK
                 for shard in range(plan.n_shards))
    return {spec.name: blocks * shard_bytes(spec) for spec in plan.arrays() if spec.shards is not None}


def lens_bytes(plan: StorePlan, vocab_size: int) -> dict[str, int]:
    """Uncompressed bytes of the weights `lens/` holds for a store of `plan` (compute dtype): final norm,
    unembedding, down_proj with FFN arrays, o_proj with attention rows. The vocabulary strings come on top."""
    itemsize = np.dtype(plan.compute_dtype.replace("bfloat16", "float16")).itemsize  # bf16 is stored as 16 bits
    sizes = {schema.LENS_NORM_WEIGHT: plan.d_model * itemsize,
             schema.LENS_UNEMBEDDING: vocab_size * plan.d_model * itemsize}
    if plan.ffn_topk or plan.ffn_dense:
        sizes[schema.LENS_DOWN_PROJ] = len(plan.layers) * plan.d_model * plan.ffn_units * itemsize
    if plan.attention_last:
        sizes[schema.LENS_O_PROJ] = len(plan.layers) * plan.d_model * plan.n_heads * plan.head_dim * itemsize
    return sizes


def capture_size(options: Any) -> tuple[StorePlan, list[int], dict[str, int], dict[str, int]]:
    """The plan, stored tokens per sample, activation bytes per array and uncompressed `lens/` weight bytes per
    array of the store `python -m capture` would write with `options` (a CaptureOptions): no weights loaded, no
    forward pass."""
    from capture.loading import open_model, resolve_model
    from capture.options import check_options
    from capture.run import open_capture_dataset, store_plan
    from capture.samples import prepare_record
    from capture.selection import parse_token_sets

    check_options(options)
    token_sets = parse_token_sets(options.tokens)
    dense_sets = parse_token_sets(options.ffn_dense_tokens) if options.ffn_dense_tokens else None
    loaded = open_model(resolve_model(options.model, options.revision), options.dtype, options.device)
    dataset = open_capture_dataset(options)
    plan = store_plan(options, loaded, dataset)
    items = (prepare_record(loaded, dataset, i, options, token_sets, dense_sets) for i in range(plan.n_samples))
    tokens = [0 if item.skip_reason else len(item.positions) for item in items]
    vocab_size = int(loaded.adapter.text_config(loaded.config).vocab_size)
    return plan, tokens, activation_bytes(plan, tokens), lens_bytes(plan, vocab_size)


def capture_size_lines(options: Any) -> list[str]:
    """What `python -m capture.sizing --model M --dataset D ...` prints."""
    plan, tokens, sizes, lens = capture_size(options)
    total, weights = sum(sizes.values()), sum(lens.values())
    lines = [f"{options.model} over {options.dataset}: {plan.n_samples} samples in {plan.n_shards} shard(s), "
             f"--arrays {','.join(parse_arrays(options.arrays))}, layers {list(plan.layers)}, hidden streams "
             f"{list(plan.streams)}, {plan.compute_dtype}; stored tokens per sample mean "
             f"{np.mean(tokens) if tokens else 0:.0f}, max {max(tokens, default=0)}"]
    lines += [f"  {name:<16} {size:>14,d} bytes" for name, size in sizes.items()]
    lines += [f"  lens/{name:<11} {size:>14,d} bytes (uncompressed)" for name, size in lens.items()]
    exact = "exact" if options.compression == "none" else "an upper bound (zstd)"
    lines.append(f"  {'activations':<16} {total:>14,d} bytes ({total / 1e6:.2f} MB, {total / max(plan.n_samples, 1) / 1e3:.1f}"
                 f" kB per sample; {exact})")
    lines.append(f"  {'store':<16} {total + weights:>14,d} bytes ({(total + weights) / 1e6:.2f} MB: activations and "
                 "lens/ weights uncompressed; the token table, per-sample fields and vocabulary come on top)")
    return lines


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if any(arg.split("=", 1)[0] in CAPTURE_FLAGS for arg in argv):
        return _main_capture(argv)
    parser = argparse.ArgumentParser(
        prog="python -m capture.sizing", description=__doc__.splitlines()[0],
        epilog="With --model or --dataset, takes `python -m capture`'s options and sizes that one capture instead.")
    parser.add_argument("--models", default="all", help="comma-separated model names, or 'all' (aliases and tiny models)")
    parser.add_argument("--image-size", default="640x480", help="WIDTHxHEIGHT in pixels")
    parser.add_argument("--arrays", default=",".join(schema.DEFAULT_ARRAYS), help="arrays counted, as capture's --arrays")
    parser.add_argument("--streams", default=None, help="hidden streams counted, as capture's --streams")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        print(f"error: --image-size {args.image_size!r}: expected WIDTHxHEIGHT, e.g. 640x480", file=sys.stderr)
        return 2
    names = [*ALIASES, *TINY_MODELS] if args.models == "all" else [m.strip() for m in args.models.split(",")]
    try:
        arrays = parse_arrays(args.arrays)
        rows = [sample_size(name, height, width, arrays=arrays, streams=args.streams) for name in names]
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    selection = "" if arrays == schema.DEFAULT_ARRAYS and args.streams is None else \
        f", --arrays {','.join(arrays)}" + (f" --streams {args.streams}" if args.streams else "")
    print(markdown_table(rows, height, width, selection))
    return 0


def _main_capture(argv: list[str]) -> int:
    from capture.options import parse_options

    try:
        lines = capture_size_lines(parse_options(argv))
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
