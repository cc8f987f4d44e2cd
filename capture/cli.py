"""`python -m capture`: run a model once over a dataset and store its activations."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from capture.datasets import DATASETS, SAMPLE_UNITS
from capture.errors import CaptureError
from capture.prompts import CHAT, DEFAULT_PROMPT, PROMPT_SETS
from capture.registry import ALIASES, REAL_PARTS_MODELS, TINY_MODELS, TOY_MODELS
from capture.run import COMPRESSIONS, CaptureOptions, default_out, run_capture


def build_parser() -> argparse.ArgumentParser:
    models = ", ".join([*ALIASES, *REAL_PARTS_MODELS, *TOY_MODELS, *TINY_MODELS])
    parser = argparse.ArgumentParser(
        prog="python -m capture",
        description="Capture hidden states, KV-cache keys/values and FFN coefficients of a VLM into a Zarr store.",
    )
    parser.add_argument("--model", default="tiny-llava-ov", help=f"alias ({models}), hub id or local directory")
    parser.add_argument("--revision", help="hub revision (branch, tag or commit) to load from the HF cache")
    parser.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="compute dtype")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dataset", default="synthetic-coco", choices=DATASETS)
    parser.add_argument("--data-root", type=Path,
                        help="dataset directory (synthetic-coco: where to generate it; manifest: the .jsonl file)")
    parser.add_argument("--split", help="COCO split, e.g. val2017")
    parser.add_argument("--limit", type=int, help="capture only the first N samples")
    parser.add_argument("--samples", default="images", choices=SAMPLE_UNITS,
                        help="one sample per image, per box annotation, or per category name (text only)")
    parser.add_argument("--text-only", action="store_true", help="drop the images: capture the text of each sample alone")
    parser.add_argument("--out", help="store path or URL, e.g. s3://bucket/prefix/store.zarr (credentials and "
                                      "endpoint from AWS_* variables; default: stores/<model>__<dataset>.zarr)")
    parser.add_argument("--layers", default="all", help="decoder layers: all, or indices/ranges like 0-3,7")
    parser.add_argument("--tokens", default="all", help="token sets stored: all, or any of image,text,last")
    parser.add_argument("--ffn-topk", type=int, default=16, help="FFN memory coefficients kept per token (top-k; 0: none)")
    parser.add_argument("--ffn-dense-tokens", help="also store dense FFN coefficients for these token sets")
    parser.add_argument("--keys-prerope", action="store_true", help="also store keys before RoPE (k_proj output)")
    parser.add_argument("--compression", default="none", choices=COMPRESSIONS,
                        help="codec of the activation arrays: none (fastest; lossless codecs save only a few percent on "
                             "activations) or zstd level 1")
    parser.add_argument("--keep-mantissa-bits", type=int, metavar="N",
                        help="lossy: round activations to N mantissa bits before writing (with --compression zstd); "
                             "the relative error bound 2^-(N+1) is recorded in the store")
    parser.add_argument("--attention-last", action="store_true",
                        help="also store the last position's attention row per layer and head (and o_proj weights)")
    parser.add_argument("--prompt", default=DEFAULT_PROMPT,
                        help="user text of every sample (may name record fields: {caption}, {label}, {categories})")
    parser.add_argument("--template", default=CHAT,
                        help="'chat' (the model's chat template), 'bbox' (Jung et al.: <image> bbox:[x1,y1,x2,y2] label), "
                             "or a raw string with {image} and {text} slots")
    parser.add_argument("--prefix", help="text placed before the image (Liu et al. section 4.1); may name record fields")
    parser.add_argument("--prompt-set", choices=PROMPT_SETS,
                        help="user text from Wei's prompt types: normal instructions, noisy vocabulary tokens, empty")
    parser.add_argument("--visual-prefix", action="store_true",
                        help="with --template bbox: stop right before the label, so the next token is the label")
    parser.add_argument("--batch-size", type=int, default=8, help="samples per shard (the unit of writing and resuming)")
    parser.add_argument("--forward-batch", type=int, default=1,
                        help="samples per forward pass when their input shapes agree (1: each sample alone, bit-stable)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing store captured with other settings")
    parser.add_argument("--catalog", help="register the finished store in this catalog (e.g. catalogs/team)")
    parser.add_argument("--intervention", type=Path,
                        help="capture an intervened run: a spec file (knockout, mean ablation, truncation; see "
                             "`python -m interventions spec`)")
    parser.add_argument("--rank", type=int, default=int(os.environ.get("RANK", 0)),
                        help="this process's rank: it writes shards rank, rank + world size, ... (default: $RANK, "
                             "set by torchrun; for SLURM arrays pass $SLURM_ARRAY_TASK_ID)")
    parser.add_argument("--world-size", type=int, default=int(os.environ.get("WORLD_SIZE", 1)),
                        help="processes sharing the store (default: $WORLD_SIZE, set by torchrun)")
    parser.add_argument("--wait-for-store", type=float, default=3600, metavar="SECONDS",
                        help="how long a rank other than 0 waits for rank 0 to create the store")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = CaptureOptions(
        model=args.model, dataset=args.dataset, out=args.out, data_root=args.data_root, split=args.split,
        limit=args.limit, revision=args.revision, dtype=args.dtype, device=args.device, layers=args.layers,
        tokens=args.tokens, ffn_topk=args.ffn_topk, ffn_dense_tokens=args.ffn_dense_tokens,
        keys_prerope=args.keys_prerope, attention_last=args.attention_last, compression=args.compression,
        keep_mantissa_bits=args.keep_mantissa_bits, samples=args.samples,
        text_only=args.text_only, prompt=args.prompt,
        template=args.template, prefix=args.prefix, prompt_set=args.prompt_set, visual_prefix=args.visual_prefix,
        batch_size=args.batch_size, forward_batch=args.forward_batch, overwrite=args.overwrite, progress=not args.no_progress,
        catalog=args.catalog, intervention=args.intervention, rank=args.rank, world_size=args.world_size,
        wait_for_store=args.wait_for_store,
    )
    from huggingface_hub.utils import disable_progress_bars
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar and summary are the output
    disable_progress_bars()
    try:
        summary = run_capture(options)
    except CaptureError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = options.out or default_out(options)
        print(f"interrupted: completed shards in {out} are kept; rerun the same command to resume", file=sys.stderr)
        return 130
    print("\n".join(summary.lines()))
    return 0
