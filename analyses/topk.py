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

EPS32 = float(np.finfo(np.float32).eps)
VOCAB_BLOCK = 16384  # matrix rows per product: a (1024 x 16384) float32 block of logits is 64 MB
QUERY_BLOCK = 1024  # query rows per product


def exact_products(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """(n, rows) float64 products of float32 `queries` (n, d) and `matrix` (rows, d), plus `bias` (rows,): the
    reference the float32 paths are compared with (float64 rounding is 2**29 times finer)."""
    out = queries.astype(np.float64) @ matrix.astype(np.float64).T
    return out + bias.astype(np.float64) if bias is not None else out


def rounding_bound(queries: np.ndarray, matrix: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """(n, rows) bound on |float32 product - exact product| of `queries` (n, d) @ `matrix` (rows, d).T (+ bias) for
    any summation order: d * eps32 * (|queries| @ |matrix|.T + |bias|)."""
    magnitude = np.abs(queries.astype(np.float64)) @ np.abs(matrix.astype(np.float64)).T
    if bias is not None:
        magnitude = magnitude + np.abs(bias.astype(np.float64))
    return queries.shape[-1] * EPS32 * magnitude


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
