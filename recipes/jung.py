"""Jung et al., *Prompt the Unseen* §4: the FFN as key-value memory at the last position of a visual prefix
(`[image] bbox:[x1,y1,x2,y2] ` before the label), on Visual Genome's test images, seen and unseen labels apart.
Their model is a LLaVA-style VLM on LLaMA 3.2 3B; they print no values for these figures, only the curves."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyses.commands import FfnMemory
from analyses.ffn_memory import COHERENCE_KIND
from recipes.recipe import Context, row
from recipes.steps import analyse, capture, read_json
from store.schema import LAYER, TokenSet

PREFIX = {"samples": "annotations", "template": "bbox", "visual_prefix": True, "tokens": TokenSet.LAST.value, "next_token_topk": 5}


def ffn_memory(context: Context) -> list[dict[str, Any]]:
    """Per label group: top-3 keys per layer at the visual prefix, the pairwise MiniLM cosine of each key's three
    most frequent labels against three random labels of the group (Fig. 4-5), and the values' top-3 tokens against
    the true label against random values (Fig. 6-7)."""
    rows = []
    for subset in ("seen", "unseen"):
        store_path = capture(context, f"vg-{subset}", "visual-genome", context.count(None), split="test", subset=subset,
                             **PREFIX)
        out = analyse(context, FfnMemory(), f"ffn-memory-{subset}", store=store_path, n_keys=3,
                      n_draws=context.sweep(100, 5))
        rows += _coherence_rows(subset, pd.read_csv(out / "label_coherence.csv"), read_json(out / "ffn_memory.json"))
    return rows


def _coherence_rows(subset: str, coherence: pd.DataFrame, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """How many layers have a mean top-label cosine above the random labels' (the paper: every layer)."""
    means = coherence.groupby([LAYER, COHERENCE_KIND])["cosine"].mean().unstack(COHERENCE_KIND)
    above = int((means["labels"] > means["random"]).sum())
    unique_keys = sum((summary.get("unique_keys_per_layer") or {}).values())
    figure = "Fig. 4" if subset == "seen" else "Fig. 5"
    return [row(f"{subset}: layers where the top-3 labels' cosine exceeds random", f"{above} of {len(means)}",
                "every layer", f"{figure} (test-{subset})", n=summary.get("n_prefixes"),
                note=f"unique (layer, key) pairs {unique_keys}; the paper's unique keys: "
                     f"{'6,359' if subset == 'seen' else '5,744'} (§4)")]
