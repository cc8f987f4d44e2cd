"""Tokens per image and bytes per sample of a capture, from a model's config alone (no weights).

`python -m capture.sizing` prints a markdown table for every registered model at one image size.
Image-token counts come from running the family's real processor and token-table code on a blank
image of that size; bytes are the uncompressed payload of the store's arrays for one sample.
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
from capture.selection import streams_for
from store import schema
from store.layout import StorePlan

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class SampleSize:
    """One model's footprint for one image of `height` x `width` pixels (`--tokens image`, all layers)."""

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


def sample_size(name: str, height: int, width: int, dtype: str = "bfloat16", ffn_topk: int = 16) -> SampleSize:
    """Tokens and bytes of one `height` x `width` image sample of model `name`."""
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
        n_samples=1, batch_size=1, max_images=1, layers=layers, streams=streams_for(layers, n_layers),
        n_kv_heads=text.num_key_value_heads, head_dim=head_dim, d_model=text.hidden_size,
        ffn_units=text.intermediate_size, ffn_topk=ffn_topk, compute_dtype=dtype, keys_prerope=False, ffn_dense=True,
    )
    sizes = {spec.name: _bytes(spec) for spec in plan.arrays(n_token_slots=n_image) if spec.has_token_axis}
    return SampleSize(
        model=name, config_source=source, image_tokens=n_image, layers=n_layers, kv_heads=text.num_key_value_heads,
        head_dim=head_dim, d_model=text.hidden_size, ffn_units=text.intermediate_size,
        bytes_hidden=sizes[schema.HIDDEN], bytes_keys_values=sizes[schema.KEYS] + sizes[schema.VALUES],
        bytes_ffn_topk=sizes[schema.FFN_TOPK_INDEX] + sizes[schema.FFN_TOPK_VALUE],
        bytes_token_table=sum(v for k, v in sizes.items() if k not in schema.ACTIVATION_DIMS),
        bytes_ffn_dense=sizes[schema.FFN_DENSE],
    )


def _bytes(spec: Any) -> int:
    return int(np.prod(spec.shape[1:])) * np.dtype(spec.storage_dtype).itemsize


def markdown_table(rows: list[SampleSize], height: int, width: int) -> str:
    mb = 1e6
    lines = [
        f"Per sample: one {width}x{height} image, `--tokens image`, all layers, bf16, FFN top-16, uncompressed.",
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m capture.sizing", description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="all", help="comma-separated model names, or 'all' (aliases and tiny models)")
    parser.add_argument("--image-size", default="640x480", help="WIDTHxHEIGHT in pixels")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.image_size.lower().split("x"))
    except ValueError:
        print(f"error: --image-size {args.image_size!r}: expected WIDTHxHEIGHT, e.g. 640x480", file=sys.stderr)
        return 2
    names = [*ALIASES, *TINY_MODELS] if args.models == "all" else [m.strip() for m in args.models.split(",")]
    try:
        rows = [sample_size(name, height, width) for name in names]
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(rows, height, width))
    return 0


if __name__ == "__main__":
    sys.exit(main())
