"""Nearest-neighbour correspondence speed: faiss vs numpy brute force on image value tokens, and for k=1 the
batched path `analyses.correspondence` takes on CPU (`neighbours.nearest_batched`: every layer and KV head in one
torch matmul).

One image pair = 729 tokens x 128 dims per KV head, for every KV head and layer of a 7B-sized model
(28 layers x 4 KV heads): pairs/s for k=1 and k=5, and whether both give the same neighbours. Numpy is
given its fast path (float32 matmul + argpartition); `analyses.neighbours.brute_force` is the float64 reference
the tests use. The whole analysis over a store of RAM size, against the raw read rate: benchmarks/out_of_core.py.
Usage: python benchmarks/correspondence_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from common import append_results, best_of, command_line, peak_rss_mb

from analyses import neighbours  # noqa: E402


def numpy_search(queries: np.ndarray, database: np.ndarray, k: int, metric: str = "cosine"):
    """Numpy's best effort: float32 matmul of normalised vectors, argpartition for the top k."""
    q, db = neighbours.prepare(queries, metric), neighbours.prepare(database, metric)
    scores = q @ db.T
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k] if k > 1 else scores.argmax(axis=1)[:, None]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
    indices = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(scores, indices, axis=1), indices


def faiss_search(queries: np.ndarray, database: np.ndarray, k: int, metric: str = "cosine"):
    return neighbours.search(queries, database, k, metric, device="cpu")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="a few heads only (smoke test)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    layers, heads, tokens, dims = (2, 2, 729, 128) if args.quick else (28, 4, 729, 128)
    rng = np.random.default_rng(0)
    source = rng.normal(size=(layers, heads, tokens, dims)).astype(np.float32)
    target = rng.normal(size=(layers, heads, tokens, dims)).astype(np.float32)
    neighbours.limit_threads(2)

    def sweep(search, k):
        return [search(source[li, hi], target[li, hi], k, "cosine")[1] for li in range(layers) for hi in range(heads)]

    rows = ["| k | faiss pairs/s | numpy pairs/s | faiss / numpy | same neighbours |", "|---|---|---|---|---|"]
    batched_time = best_of(lambda: neighbours.nearest_batched(source, target, "cosine"), args.repeats)
    per_unit_time = best_of(lambda: sweep(faiss_search, 1), args.repeats)
    same_batched = np.mean([np.array_equal(a[:, 0], b) for a, b in zip(
        sweep(faiss_search, 1), neighbours.nearest_batched(source, target, "cosine").reshape(layers * heads, -1),
        strict=True)])
    keypoints = source[:, :, :64]  # the analysis's case: 64 keypoint tokens per pair against every target token
    batched_keypoints = best_of(lambda: neighbours.nearest_batched(keypoints, target, "cosine"), args.repeats)
    per_unit_keypoints = best_of(lambda: [faiss_search(keypoints[li, hi], target[li, hi], 1)
                                          for li in range(layers) for hi in range(heads)], args.repeats)
    for k in (1, 5):
        faiss_time = best_of(lambda k=k: sweep(faiss_search, k), args.repeats)
        numpy_time = best_of(lambda k=k: sweep(numpy_search, k), args.repeats)
        same = np.mean([np.array_equal(a, b) for a, b in zip(sweep(faiss_search, k), sweep(numpy_search, k), strict=True)])
        rows.append(f"| {k} | {1 / faiss_time:.2f} | {1 / numpy_time:.2f} | {numpy_time / faiss_time:.1f}x | "
                    f"{same:.1%} of heads |")
    rows.append(f"\nk=1 batched (torch, all units in one matmul): {1 / batched_time:.2f} pairs/s against faiss per unit "
                f"{1 / per_unit_time:.2f} pairs/s in the same run ({per_unit_time / batched_time:.1f}x); same neighbours "
                f"as faiss in {same_batched:.1%} of heads. With 64 keypoint queries per pair (what `semantic_correspondence` "
                f"searches): batched {1 / batched_keypoints:.2f} pairs/s, faiss per unit {1 / per_unit_keypoints:.2f} "
                f"pairs/s ({per_unit_keypoints / batched_keypoints:.1f}x).")
    rows.append(f"\nOne pair = {layers} layers x {heads} KV heads x {tokens} tokens x {dims} dims (cosine). "
                f"Peak RSS {peak_rss_mb():.0f} MB.")
    append_results("Correspondence: faiss vs numpy", command_line("correspondence_speed.py", args), rows)


if __name__ == "__main__":
    sys.exit(main())
