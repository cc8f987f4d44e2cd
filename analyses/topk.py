"""Top-k of products with a large matrix: the logit lens (normalised hidden states @ unembedding.T) and the FFN value
projection (down_proj columns @ unembedding.T), computed in torch blocked over the matrix's rows so that the
(queries x vocab) logits never exist whole; and the float32 rounding bound that says how far two summation orders
of the same products may differ.

Rounding bound (Higham, Accuracy and Stability of Numerical Algorithms, §3.1): a float32 dot product of d terms
summed in any order differs from the exact sum by at most gamma_d * sum_i |a_i b_i|, gamma_d = d u / (1 - d u),
u = eps32 / 2. `rounding_bound` uses d * eps32 * (sum_i |a_i b_i| + |bias|), which covers gamma_(d+1) (the bias's
own rounding included) for any d with d * eps32 < 1. Two computations of the same logit (blocked and one-shot,
numpy and torch, CPU and GPU) then differ by at most twice that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

EPS32 = float(np.finfo(np.float32).eps)
VOCAB_BLOCK = 16384  # matrix rows per product: a (1024 x 16384) float32 block of logits is 64 MB
QUERY_BLOCK = 1024  # query rows per product
INPUT_DTYPES = ("auto", "float32", "bfloat16")


def exact_products(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """(n, rows) float64 products of float32 `queries` (n, d) and `matrix` (rows, d), plus `bias` (rows,): the
    reference the float32 paths are compared with (float64 rounding is 2**29 times finer). Blocked over rows."""
    return _float64_products(queries, matrix, bias, absolute=False)


def rounding_bound(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """(n, rows) bound on |float32 product - exact product| of `queries` (n, d) @ `matrix` (rows, d).T (+ bias) for
    any summation order: d * eps32 * (|queries| @ |matrix|.T + |bias|)."""
    return queries.shape[-1] * EPS32 * _float64_products(queries, matrix, bias, absolute=True)


def _float64_products(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None, absolute: bool) -> np.ndarray:
    """queries @ matrix.T + bias in float64 (of absolute values when `absolute`), `VOCAB_BLOCK` matrix rows at a time
    (a float64 copy of a whole unembedding would be 4 GB)."""
    sign = np.abs if absolute else np.asarray
    left = sign(queries.astype(np.float64))
    out = np.empty((len(queries), len(matrix)), np.float64)
    for start in range(0, len(matrix), VOCAB_BLOCK):
        out[:, start:start + VOCAB_BLOCK] = left @ sign(matrix[start:start + VOCAB_BLOCK].astype(np.float64)).T
    return out + sign(bias.astype(np.float64)) if bias is not None else out


@dataclass(frozen=True)
class Agreement:
    """How a computed top-k (ids, values) agrees with exact products, within a rounding bound B per entry.

    value_errors: entries whose value is further than B from the exact product of its id; rank_errors: entries
    whose id's exact product is further than 2 B (B: the row's largest) from the exact value of that rank;
    decided: ranks whose exact value is more than 2 B from both neighbours (the one below the k-th included), where
    any order of summation must give the exact id; decided_errors: decided ranks with another id."""

    n: int
    value_errors: int
    rank_errors: int
    decided: int
    decided_errors: int

    @property
    def ok(self) -> bool:
        return not (self.value_errors or self.rank_errors or self.decided_errors)


def agreement(ids: np.ndarray, values: np.ndarray, exact: np.ndarray, bound: np.ndarray) -> Agreement:
    """Check top-k `ids` and `values` (n, k), best first, against `exact` products and their `bound` (n, rows)."""
    k = ids.shape[1]
    picked_exact = np.take_along_axis(exact, ids, axis=1)
    value_errors = int((np.abs(values - picked_exact) > np.take_along_axis(bound, ids, axis=1)).sum())
    order = np.argsort(-exact, axis=1, kind="stable")[:, :k + 1]
    ranked = np.take_along_axis(exact, order, axis=1)  # (n, k + 1) exact values, best first
    slack = 2 * bound.max(axis=1, keepdims=True)
    rank_errors = int((np.abs(picked_exact - ranked[:, :k]) > slack).sum())
    gaps = -np.diff(ranked, axis=1)  # (n, k): gap between rank r and r + 1
    above = np.concatenate([np.full((len(ids), 1), np.inf), gaps[:, :k - 1]], axis=1)
    decided = (above > slack) & (gaps > slack)
    return Agreement(ids.size, value_errors, rank_errors, int(decided.sum()),
                     int((decided & (ids != order[:, :k])).sum()))


def torch_device(name: str, threads: int | None = None) -> torch.device:
    """The torch device called `name` ("cpu", "cuda", "cuda:1"); ValueError naming --device when CUDA is asked for
    and absent. `threads` sets torch's CPU threads (the matmul's)."""
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available here (torch {torch.__version__}, "
                         f"built with CUDA {torch.version.cuda or 'none'}); use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: expected cpu or cuda[:N]")
    if threads:
        torch.set_num_threads(threads)
    return device


class Projector:
    """A matrix (rows, d) with an optional bias (rows,) on a torch device, and the top-k of its products with
    queries, blocked over its rows (`vocab_block`) and the queries (`query_block`), accumulated in float32.

    Inputs are float32, or bfloat16 where every value is a bfloat16 number (the lens of a bf16 model: no bits
    lost). On CUDA bfloat16 products are taken by `torch.mm(..., out_dtype=float32)`; on CPU each block is widened
    to float32 first (CPUs without bf16 instructions run bf16 matmuls ~90x slower)."""

    def __init__(self, matrix: np.ndarray, bias: np.ndarray | None, device: torch.device, dtype: str = "float32",
                 vocab_block: int = VOCAB_BLOCK, query_block: int = QUERY_BLOCK):
        if dtype not in INPUT_DTYPES[1:]:
            raise ValueError(f"input dtype {dtype!r}: expected one of {INPUT_DTYPES[1:]}")
        self.device, self.vocab_block, self.query_block = device, vocab_block, query_block
        self.dtype = torch.bfloat16 if dtype == "bfloat16" else torch.float32
        host = torch.from_numpy(np.ascontiguousarray(matrix, dtype=np.float32))
        narrowed = host.to(self.dtype)
        if self.dtype == torch.bfloat16 and not torch.equal(narrowed.float(), host):
            raise ValueError("bfloat16 inputs asked for, but the matrix holds values bfloat16 cannot represent")
        self.matrix = narrowed.to(device)
        self.bias = torch.from_numpy(bias.astype(np.float32)).to(device) if bias is not None else None

    @property
    def rows(self) -> int:
        return self.matrix.shape[0]

    def top_k(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ids (n, k) int64 and float32 values (n, k), best first, of `queries` (n, d) @ matrix.T + bias."""
        if not 0 < k <= self.rows:
            raise ValueError(f"k={k}: expected 1..{self.rows}")
        ids, values = np.zeros((len(queries), k), np.int64), np.zeros((len(queries), k), np.float32)
        with torch.inference_mode():
            for start in range(0, len(queries), self.query_block):
                block = torch.from_numpy(np.ascontiguousarray(queries[start:start + self.query_block], np.float32))
                found = self._block_top_k(self._inputs(block.to(self.device)), k)
                ids[start:start + len(block)], values[start:start + len(block)] = (t.cpu().numpy() for t in found)
        return ids, values

    def _inputs(self, queries: torch.Tensor) -> torch.Tensor:
        """Float32 queries as the products take them: narrowed to bfloat16 on CUDA (refused where that loses bits),
        float32 on CPU (the matrix's blocks are widened instead)."""
        if self.dtype == torch.float32:
            return queries
        narrowed = queries.to(torch.bfloat16)
        if not torch.equal(narrowed.float(), queries):
            raise ValueError("bfloat16 inputs asked for, but the queries hold values bfloat16 cannot represent")
        return narrowed if self.device.type == "cuda" else queries

    def _block_top_k(self, queries: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Running top-k over the matrix's row blocks: each block's top-k merged with the best so far."""
        best_values = torch.full((len(queries), k), -torch.inf, device=self.device)
        best_ids = torch.full((len(queries), k), -1, dtype=torch.int64, device=self.device)
        for start in range(0, self.rows, self.vocab_block):
            logits = self._products(queries, self.matrix[start:start + self.vocab_block])
            if self.bias is not None:
                logits += self.bias[start:start + self.vocab_block]
            values, ids = logits.topk(min(k, logits.shape[1]), dim=1)
            merged_values, where = torch.cat([best_values, values], dim=1).topk(k, dim=1)
            best_ids = torch.cat([best_ids, ids + start], dim=1).gather(1, where)
            best_values = merged_values
        return best_ids, best_values

    def _products(self, queries: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """(n, rows of block) float32 products, float32 accumulation (no TF32)."""
        if queries.dtype == torch.bfloat16:
            return torch.mm(queries, block.T, out_dtype=torch.float32)
        return queries @ block.float().T
