"""Logit lens throughput at a real vocabulary size: tokens/s through the final RMS norm and a 152,064-row
unembedding (Qwen2 vocabulary) with chunking, and peak memory (the vocab x tokens matrix never exists whole).

Usage: python benchmarks/logit_lens_speed.py [--quick] [--d-model 3584] [--tokens 2048] [--block 256]
"""

from __future__ import annotations

import argparse
import sys

import ml_dtypes
import numpy as np
from common import append_results, best_of, command_line, peak_rss_mb

from analyses.lens import Lens, top_tokens  # noqa: E402

VOCAB = 152_064


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--d-model", type=int, default=3584)
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--block", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    d_model, n_tokens = (896, 256) if args.quick else (args.d_model, args.tokens)
    rng = np.random.default_rng(0)
    unembedding = rng.standard_normal((VOCAB, d_model), dtype=np.float32) * 0.02
    lens = Lens(np.ones(d_model, ml_dtypes.bfloat16), 1e-6, unembedding, None,
                np.array([f"t{i}" for i in range(VOCAB)], dtype=object), np.dtype(ml_dtypes.bfloat16))
    hidden = rng.standard_normal((n_tokens, d_model), dtype=np.float32).astype(ml_dtypes.bfloat16)
    base_rss = peak_rss_mb()
    seconds = best_of(lambda: top_tokens(hidden, lens, k=5, block=args.block), args.repeats)
    rows = [
        "| vocab | d_model | tokens | block | tokens/s | peak RSS | unembedding (float32) | one block of logits |",
        "|---|---|---|---|---|---|---|---|",
        f"| {VOCAB} | {d_model} | {n_tokens} | {args.block} | {n_tokens / seconds:,.0f} | {peak_rss_mb():,.0f} MB | "
        f"{unembedding.nbytes / 1e6:,.0f} MB | {args.block * VOCAB * 4 / 1e6:,.0f} MB |",
        f"\nPeak RSS before the lens ran: {base_rss:,.0f} MB (the unembedding itself).",
    ]
    append_results("Logit lens throughput", command_line("logit_lens_speed.py", args, "d_model", "tokens", "block"), rows)


if __name__ == "__main__":
    sys.exit(main())
