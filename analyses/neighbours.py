"""Exact nearest neighbours between token vectors with faiss (GPU index when one is available).

Flat (exact) indexes only, so the GPU and CPU paths return the same neighbours; `brute_force` is the
numpy reference the tests compare against.
"""

from __future__ import annotations

import os
from functools import cache

import faiss
import numpy as np
import torch

METRICS = ("cosine", "l2", "dot")


@cache
def gpu_count() -> int:
    """GPUs faiss can use (0 for faiss-cpu builds)."""
    return faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0


def limit_threads(n: int | None = None) -> None:
    """Cap faiss' OpenMP threads (several thread pools in one process fight each other; dask workers
    each get one by default)."""
    faiss.omp_set_num_threads(n or int(os.environ.get("VLM_FAISS_THREADS", "1")))


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Contiguous float32, L2-normalised for cosine."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if metric == "cosine":
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.maximum(norms, 1e-12)
    return x


def search(queries: np.ndarray, database: np.ndarray, k: int = 1, metric: str = "cosine",
           device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest rows of `database` (m, d) for each row of `queries` (n, d).

    Returns (scores, indices), each (n, k), best first: similarity for cosine / dot, squared distance for l2.
    `device`: "auto" (GPU when faiss sees one), "cpu" or "gpu".
    """
    q, db = prepare(queries, metric), prepare(database, metric)
    k = min(k, len(db))
    index = faiss.IndexFlatL2(db.shape[1]) if metric == "l2" else faiss.IndexFlatIP(db.shape[1])
    use_gpu = device == "gpu" or (device == "auto" and gpu_count() > 0)
    if use_gpu:
        if gpu_count() == 0:
            raise RuntimeError("device='gpu' but faiss sees no GPU (install faiss-gpu and check CUDA)")
        index = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)
    index.add(db)
    scores, indices = index.search(q, k)
    return scores, indices.astype(np.int64)


def nearest_batched(queries: np.ndarray, database: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """(..., n) index of the nearest row of `database` (..., m, d) for each row of `queries` (..., n, d), every
    leading index (e.g. layer, KV head) at once: one batched float32 torch matmul instead of one faiss search per
    unit (on CPU those searches cost more in per-call and thread start-up than in arithmetic; numpy's stacked
    matmul does not reach BLAS). Ties: the lowest index."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r} (choose from {', '.join(METRICS)})")
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float32))
    db = torch.from_numpy(np.ascontiguousarray(database, dtype=np.float32))
    if metric == "cosine":
        q = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        db = db / db.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    with torch.inference_mode():
        scores = q @ db.transpose(-1, -2)  # (..., n, m)
        if metric == "l2":  # |q - x|^2 = |q|^2 - 2 q.x + |x|^2: the first term is the same for every x
            scores = 2 * scores - (db * db).sum(dim=-1).unsqueeze(-2)
        return scores.argmax(dim=-1).numpy()


def brute_force(queries: np.ndarray, database: np.ndarray, k: int = 1, metric: str = "cosine") -> tuple[np.ndarray, np.ndarray]:
    """The same as `search`, in float64 numpy (the reference)."""
    q, db = prepare(queries, metric).astype(np.float64), prepare(database, metric).astype(np.float64)
    if metric == "l2":
        scores = -(((q[:, None, :] - db[None, :, :]) ** 2).sum(-1))
    else:
        scores = q @ db.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    best = np.take_along_axis(scores, order, axis=1)
    return (-best if metric == "l2" else best), order
