"""What `python -m capture` accepts: one dataclass whose fields are the command-line options (`store.arguments`),
and the checks that refuse combinations that cannot mean anything, before any work is done."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from capture.datasets import DATASETS, SAMPLE_UNITS
from capture.errors import CaptureError
from capture.prompts import BBOX, CHAT, DEFAULT_PROMPT, PROMPT_SETS
from capture.registry import ALIASES, REAL_PARTS_MODELS, TINY_MODELS, TOY_MODELS
from capture.selection import ALL, parse_arrays
from store.arguments import add_options, option, parsed_options
from store.location import Location
from store.schema import ARRAY_SELECTION, DEFAULT_ARRAYS, FFN_TOPK_ORDERS, HIDDEN

COMPRESSIONS = ("none", "zstd")
FFN_TOPK_BY = tuple(FFN_TOPK_ORDERS)
MODELS = ", ".join([*ALIASES, *REAL_PARTS_MODELS, *TOY_MODELS, *TINY_MODELS])


@dataclass(frozen=True)
class CaptureOptions:
    """Everything a capture is run with (the help text of each option is its documentation)."""

    model: str = option("tiny-llava-ov", help=f"alias ({MODELS}), hub id or local directory")
    revision: str | None = option(None, help="hub revision (branch, tag or commit) to load from the HF cache")
    dtype: str = option("auto", choices=["auto", "bf16", "fp16", "fp32"], help="compute dtype")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    dataset: str = option("synthetic-coco", choices=DATASETS, help="data set reader (see README, Datasets)")
    data_root: Path | None = option(
        None, help="dataset directory (synthetic-coco: where to generate it; manifest: the .jsonl file)")
    split: str | None = option(None, help="the data set's split (coco: val2017 by default; see README, Data sets read natively)")
    subset: str | None = option(None, help="part of the data set, comma-separated (SPair categories, DAVIS sequences, Pascal-5i "
                                      "folds, POPE settings, ...; see README, Data sets read natively)")
    limit: int | None = option(None, help="capture only the first N samples")
    samples: str = option("images", choices=SAMPLE_UNITS,
                          help="one sample per image, per box annotation, or per category name (text only)")
    text_only: bool = option(False, help="drop the images: capture the text of each sample alone")
    out: Location | None = option(None, type=str,
                                  help="store path or URL, e.g. s3://bucket/prefix/store.zarr (credentials and "
                                       "endpoint from AWS_* variables; default: stores/<model>__<dataset>.zarr)")
    layers: str = option(ALL, help="decoder layers: all, or indices/ranges like 0-3,7")
    tokens: str = option(ALL, help="token sets stored: all, or any of image,text,last")
    arrays: str = option(",".join(DEFAULT_ARRAYS), help="activation arrays kept, comma-separated among "
                         f"{', '.join(ARRAY_SELECTION)} (ffn: the FFN top-k pair); e.g. keys alone for Liu et al.'s "
                         "variance. Arrays left out are neither copied off the device nor written")
    streams: str | None = option(None, help="hidden streams kept: all, or indices/ranges like 0,4-6 (-1: the last "
                                            "layer's raw output); default: those of --layers")
    ffn_topk: int = option(16, help="FFN memory coefficients kept per token (top-k; 0: none)")
    ffn_topk_by: str = option("signed", choices=FFN_TOPK_BY,
                              help="rank FFN coefficients by signed value (Jung et al.: the most activated keys) or by "
                                   "absolute value (strongly negative memories too); values keep their sign")
    next_token_topk: int = option(0, metavar="K", help="also keep the model's own top-K next tokens and their logits "
                                                       "at the last position (ffn-memory conditions on them)")
    ffn_dense_tokens: str | None = option(None, help="also store dense FFN coefficients for these token sets")
    keys_prerope: bool = option(False, help="also store keys before RoPE (k_proj output)")
    compression: str = option("none", choices=COMPRESSIONS,
                              help="codec of the activation arrays: none (fastest; lossless codecs save only a few "
                                   "percent on activations) or zstd level 1")
    keep_mantissa_bits: int | None = option(
        None, metavar="N", help="lossy: round activations to N mantissa bits before writing (with --compression zstd); "
                                "the relative error bound 2^-(N+1) is recorded in the store")
    attention_last: bool = option(
        False, help="also store the last position's attention row per layer and head (and o_proj weights)")
    prompt: str = option(DEFAULT_PROMPT,
                         help="user text of every sample (may name record fields: {caption}, {label}, {categories})")
    template: str = option(CHAT, help="'chat' (the model's chat template), 'bbox' (Jung et al.: <image> "
                                      "bbox:[x1,y1,x2,y2] label), or a raw string with {image} and {text} slots")
    prefix: str | None = option(
        None, help="text placed before the image (Liu et al. section 4.1); may name record fields")
    prompt_set: str | None = option(
        None, choices=PROMPT_SETS, help="user text from Wei's prompt types: normal instructions, noisy vocabulary "
                                        "tokens, empty")
    visual_prefix: bool = option(
        False, help="with --template bbox: stop right before the label, so the next token is the label")
    batch_size: int = option(8, help="samples per shard (the unit of writing and resuming)")
    forward_batch: int = option(
        1, help="samples per forward pass when their input shapes agree (1: each sample alone, bit-stable)")
    overwrite: bool = option(False, help="replace an existing store captured with other settings")
    catalog: str | None = option(None, help="register the finished store in this catalog (e.g. catalogs/team)")
    intervention: Path | None = option(
        None, help="capture an intervened run: a spec file (knockout, mean ablation, truncation; see "
                   "`python -m interventions spec`)")
    rank: int = option(default_factory=lambda: int(os.environ.get("RANK", 0)),
                       help="this process's rank: it writes shards rank, rank + world size, ... (default: $RANK, set "
                            "by torchrun; for SLURM arrays pass $SLURM_ARRAY_TASK_ID)")
    world_size: int = option(default_factory=lambda: int(os.environ.get("WORLD_SIZE", 1)),
                             help="processes sharing the store (default: $WORLD_SIZE, set by torchrun)")
    wait_for_store: float = option(3600.0, metavar="SECONDS",
                                   help="how long a rank other than 0 waits for rank 0 to create the store")
    progress: bool = option(True, flag="--no-progress", negate=True, help="no progress bar")
    overlap: bool = option(True, flag="--no-overlap", negate=True,
                           help="copy each sample's arrays to the host right after its forward pass instead of "
                                "overlapping the copies with the next one (same stored bits)")

    def default_out(self) -> Path:
        """stores/<model>__<dataset>.zarr, when --out is not given."""
        safe_model = self.model.rstrip("/").replace("/", "__")
        return Path("stores") / f"{Path(safe_model).name}__{self.dataset}.zarr"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Capture hidden states, KV-cache keys/values and FFN coefficients of a VLM into a Zarr store.",
    )
    add_options(parser, CaptureOptions)
    return parser


def parse_options(argv: list[str] | None = None) -> CaptureOptions:
    """CaptureOptions from a command line."""
    return CaptureOptions(**parsed_options(CaptureOptions, build_parser().parse_args(argv)))


def check_options(options: CaptureOptions) -> None:
    """Refuse values and combinations that cannot mean anything (CaptureError, one line)."""
    if options.batch_size < 1:
        raise CaptureError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.forward_batch < 1:
        raise CaptureError(f"--forward-batch must be at least 1, got {options.forward_batch}")
    if options.keep_mantissa_bits is not None and options.compression == "none":
        raise CaptureError("--keep-mantissa-bits only saves space with a codec: add --compression zstd")
    if options.compression not in COMPRESSIONS:
        raise CaptureError(f"--compression {options.compression!r}: choose from {', '.join(COMPRESSIONS)}")
    if options.ffn_topk < 0:
        raise CaptureError(f"--ffn-topk must be 0 (no FFN coefficients) or more, got {options.ffn_topk}")
    if options.ffn_topk_by not in FFN_TOPK_BY:
        raise CaptureError(f"--ffn-topk-by {options.ffn_topk_by!r}: choose from {', '.join(FFN_TOPK_BY)}")
    if options.next_token_topk < 0:
        raise CaptureError(f"--next-token-topk must be 0 (none) or more, got {options.next_token_topk}")
    if not 0 <= options.rank < options.world_size:
        raise CaptureError(f"--rank must be in 0..{options.world_size - 1} for --world-size {options.world_size}, "
                           f"got {options.rank}")
    if options.world_size > 1 and options.overwrite:
        raise CaptureError("--overwrite with several ranks would let one rank delete the others' shards: delete the "
                           "store first, or run --overwrite with one process")
    if options.intervention is not None and options.forward_batch > 1:
        raise CaptureError("--intervention is resolved per sample: drop --forward-batch")
    _check_prompt_options(options)
    _check_arrays(options)


def _check_arrays(options: CaptureOptions) -> None:
    arrays = parse_arrays(options.arrays)
    if options.streams is not None and HIDDEN not in arrays:
        raise CaptureError(f"--streams selects hidden streams, but --arrays {options.arrays!r} keeps no hidden states: "
                           "add hidden to --arrays or drop --streams")
    if options.ffn_dense_tokens is not None and "ffn" not in arrays:
        raise CaptureError(f"--ffn-dense-tokens stores FFN coefficients: add ffn to --arrays {options.arrays!r}")


def _check_prompt_options(options: CaptureOptions) -> None:
    if options.prompt_set is not None and options.prompt_set not in PROMPT_SETS:
        raise CaptureError(f"unknown --prompt-set {options.prompt_set!r} (choose from {', '.join(PROMPT_SETS)})")
    if options.visual_prefix and options.template != BBOX:
        raise CaptureError("--visual-prefix applies to --template bbox only")
    if options.template == BBOX:
        if options.samples != "annotations":
            raise CaptureError("--template bbox builds one prompt per box: use it with --samples annotations")
        if options.text_only or options.prompt_set:
            raise CaptureError("--template bbox needs the image and has no user text (no --text-only, --prompt-set)")
