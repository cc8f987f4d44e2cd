"""Logit lens throughput at a real vocabulary size against this machine's float32 matmul peak, measured in the same
run: tokens/s through the final RMS norm and a 152,064-row unembedding (Qwen2 vocabulary), for the torch path
(`analyses.topk.Projector`: vocabulary blocks, running top-k) and the numpy reference (`analyses.lens.top_tokens`),
beside the GFLOP/s of bare torch matmuls of the lens's own shapes (one query block times one vocabulary block, and
all tokens times the whole unembedding). Goal: the torch lens within 2x of the peak (lens GFLOP/s >= peak / 2,
counting 2 d_model vocab flops per token). Repeats are interleaved so that a busy machine slows every row alike.

Usage: python benchmarks/logit_lens_speed.py [--quick] [--d-model 3584] [--tokens 512] [--threads N]
"""

from __future__ import annotations

import argparse
import sys

import ml_dtypes
import numpy as np
import torch
from common import append_results, command_line, peak_rss_mb

from analyses.lens import Lens, top_tokens  # noqa: E402
from analyses.topk import QUERY_BLOCK, VOCAB_BLOCK, Projector, agreement, exact_products, rounding_bound  # noqa: E402

VOCAB = 152_064
CHECKED = 8  # tokens whose torch top-k is checked against exact products and the rounding bound


def timed(function) -> float:
    import time

    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def setup(d_model: int, n_tokens: int) -> tuple[Lens, np.ndarray]:
    """A bf16 model's lens (unit norm weight, N(0, 0.02) unembedding rounded to bf16) and bf16 hidden states."""
    rng = np.random.default_rng(0)
    unembedding = (rng.standard_normal((VOCAB, d_model), dtype=np.float32) * 0.02).astype(ml_dtypes.bfloat16)
    lens = Lens(np.ones(d_model, ml_dtypes.bfloat16), 1e-6, unembedding.astype(np.float32), None,
                np.array([f"t{i}" for i in range(VOCAB)], dtype=object), np.dtype(ml_dtypes.bfloat16))
    hidden = rng.standard_normal((n_tokens, d_model), dtype=np.float32).astype(ml_dtypes.bfloat16)
    return lens, hidden


def measure(lens: Lens, hidden: np.ndarray, repeats: int, numpy_tokens: int) -> dict[str, float]:
    """Best seconds of each: the two bare matmuls, the torch lens, the numpy lens (on `numpy_tokens` tokens)."""
    d_model, n_tokens = hidden.shape[1], len(hidden)
    project = Projector(lens.unembedding, None, torch.device("cpu"))
    weight = project.matrix
    queries = torch.from_numpy(lens.normalise(hidden))
    block_q, block_v = queries[:QUERY_BLOCK], weight[:VOCAB_BLOCK]
    n_block_products = -(-VOCAB // VOCAB_BLOCK) * -(-n_tokens // QUERY_BLOCK)
    best = {name: np.inf for name in ("block matmul", "full matmul", "torch lens", "numpy lens")}
    for _ in range(repeats):
        best["block matmul"] = min(best["block matmul"], timed(lambda: block_q @ block_v.T))
        best["full matmul"] = min(best["full matmul"], timed(lambda: queries @ weight.T))
        best["torch lens"] = min(best["torch lens"], timed(lambda: project.top_k(lens.normalise(hidden), 5)))
        best["numpy lens"] = min(best["numpy lens"], timed(lambda: top_tokens(hidden[:numpy_tokens], lens, k=5)))
    flops = 2 * d_model * VOCAB
    return {"block matmul": len(block_q) * len(block_v) * 2 * d_model / best["block matmul"] / 1e9,
            "full matmul": n_tokens * flops / best["full matmul"] / 1e9,
            "torch lens": n_tokens * flops / best["torch lens"] / 1e9,
            "numpy lens": numpy_tokens * flops / best["numpy lens"] / 1e9,
            "block products": n_block_products}


def checked(lens: Lens, hidden: np.ndarray) -> str:
    """The torch top-5 of the first tokens against exact products within the rounding bound."""
    queries = lens.normalise(hidden[:CHECKED])
    ids, values = Projector(lens.unembedding, None, torch.device("cpu")).top_k(queries, 5)
    check = agreement(ids, values, exact_products(queries, lens.unembedding), rounding_bound(queries, lens.unembedding))
    return (f"{'ok' if check.ok else 'FAILED'}: {check.decided} of {check.n} ranks decided by the bound, "
            f"{check.decided_errors} wrong; {check.value_errors} values outside it")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--d-model", type=int, default=3584)
    parser.add_argument("--tokens", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    d_model, n_tokens, repeats = (896, 64, 1) if args.quick else (args.d_model, args.tokens, args.repeats)
    lens, hidden = setup(d_model, n_tokens)
    rates = measure(lens, hidden, repeats, min(n_tokens, 64))
    peak = max(rates["block matmul"], rates["full matmul"])
    flops = 2 * d_model * VOCAB
    rows = ["| path | GFLOP/s | tokens/s at vocab 152,064 | / peak |", "|---|---|---|---|"]
    for name in ("block matmul", "full matmul", "torch lens", "numpy lens"):
        rows.append(f"| {name} | {rates[name]:.1f} | {rates[name] * 1e9 / flops:,.1f} | {rates[name] / peak:.2f} |")
    goal = "met" if rates["torch lens"] >= peak / 2 else "MISSED"
    rows.append(f"\nd_model {d_model} (flops per token 2 x d_model x vocab = {flops / 1e9:.2f} GFLOP; at d_model 3584 "
                f"multiply tokens/s by {d_model / 3584:.3f}), {n_tokens} tokens, torch threads "
                f"{torch.get_num_threads()}, blocks {QUERY_BLOCK} queries x {VOCAB_BLOCK} vocabulary rows "
                f"({rates['block products']:.0f} products), best of {repeats} interleaved repeats. Peak: the faster "
                f"bare float32 matmul. Goal torch lens >= peak / 2: {goal}. Numpy lens on {min(n_tokens, 64)} tokens. "
                f"Check: {checked(lens, hidden)}. Peak RSS {peak_rss_mb():,.0f} MB.")
    append_results("Logit lens throughput vs the matmul peak",
                   command_line("logit_lens_speed.py", args, "d_model", "tokens", "threads", "repeats"), rows)


if __name__ == "__main__":
    sys.exit(main())
