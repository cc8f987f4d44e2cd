"""Neo et al., *Towards Interpreting Visual Information Processing in VLMs* (LLaVA 1.5 7B): the logit lens over
object tokens (§4.1) and the mean ablation of object tokens polled about the object (§3, Table 1)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from analyses.commands import LogitLens
from interventions.commands import Poll
from recipes.recipe import Context, row
from recipes.steps import analyse, capture, percent, read_json
from store.schema import TokenSet

LENS_STORE = {"layers": TokenSet.ALL.value, "tokens": TokenSet.IMAGE.value, "ffn_topk": 0}


def logit_lens_and_ablation(context: Context) -> list[dict[str, Any]]:
    """COCO val images with objects of 20,000-30,000 px²: per image the best layer's share of object tokens whose top
    token is the class; then "Is there a {object} in the image?" with the object's tokens (1-token buffer) mean-
    ablated, against as many random image tokens, on Neo et al.'s image selection."""
    store_path = capture(context, "coco-hidden", "coco", context.count(None), split="val2017", **LENS_STORE)
    lens = read_json(analyse(context, LogitLens(), "logit-lens", store=store_path, min_area=20000, max_area=30000)
                     / "logit_lens.json")
    rows = [_lens_row(lens)]
    folder = context.folder("ablation")
    specs = []
    for name, tokens, control in (("object+1", "object+1", None), ("random", "random:object+1", "object+1")):
        spec = {"name": name, "ablate": [{"tokens": tokens, "mean_from": str(store_path), "mean_over": TokenSet.IMAGE.value}],
                **({"control_of": control} if control else {})}
        specs.append(folder / f"ablate-{name}.json")
        specs[-1].write_text(json.dumps(spec, indent=1))
    out = analyse(context, Poll(), "ablation", model=context.model, dataset="coco", data_root=context.data["coco"],
                  split="val2017", limit=context.count(None), dtype=context.dtype, device=context.device,
                  spec=tuple(specs), neo_selection=True, control_draws=context.sweep(10, 2))
    scores = pd.read_csv(out / "polling_scores.csv").set_index("condition")
    for name, paper, source in (("object+1", 51.28, "Table 1, LLaVA 1.5, Polling: Object + 1 Buffer (33.4 tokens)"),
                                ("random", 0.0, "Table 1, LLaVA 1.5, Polling: Random (5 to 250 tokens)")):
        if name in scores.index and "yes_to_no" in scores.columns:
            rows.append(row(f"polling decrease (Yes→No) ablating {name} tokens", scores.loc[name, "yes_to_no"], paper,
                            source, scores.loc[name].get("yes_to_no_low"),
                            scores.loc[name].get("yes_to_no_high"), scores.loc[name].get("yes_to_no_n"),
                            "Yes→No among present objects the unablated model said Yes to (percent)"))
    return rows


def _lens_row(lens: dict[str, Any]) -> dict[str, Any]:
    """Neo et al.'s per-image best-layer hit rate (mean over images) and mean best layer."""
    best = lens["per_image_best"]
    rate, layer = best["rate"], best["mean_best_stream"]
    return row("logit lens: object tokens decoded as their class, best layer per image", percent(rate["estimate"]),
               23.7, "§4.1 (170 images; mean best layer 25.7 of 33)", percent(rate["low"]), percent(rate["high"]),
               rate["n"], f"mean best stream {layer['estimate']}")
