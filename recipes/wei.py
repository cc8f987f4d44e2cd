"""Wei, *Investigating Multimodal Interaction in Vision Large Language Models* (thesis; LLaVA-1.5 and InstructBLIP,
Vicuna-13B): image-text cosine curves over prompt types (ch. 4.1), logit lens precision / recall against caption
words (ch. 3), and the caption loss against the number of image tokens kept (ch. 4.3)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from analyses.commands import Cosine, LogitLens
from interventions.commands import Loss
from recipes.recipe import Context, row
from recipes.steps import analyse, capture, percent, read_json
from store.schema import TokenSet

PROMPT_SETS = ("normal", "noisy", "empty")
KEEP = "0,1,2,4,8,16,32,64,128,256,all"  # image tokens kept
QUICK_KEEP = "0,16,64,all"


def multimodal_interaction(context: Context) -> list[dict[str, Any]]:
    """400 COCO val images with their captions: one capture per prompt type, the cosine curves of all three, the
    lens on the normal prompts, the loss with 0..all image tokens kept."""
    limit = context.count(400)
    stores = [capture(context, f"coco-prompt-{kind}", "coco", limit, split="val2017", prompt_set=kind, layers=TokenSet.ALL.value,
                      ffn_topk=0) for kind in PROMPT_SETS]
    cosine = read_json(analyse(context, Cosine(), "cosine", store=tuple(stores), labels=",".join(PROMPT_SETS))
                       / "cosine_curves.json")
    lens = read_json(analyse(context, LogitLens(), "logit-lens-captions", store=stores[0]) / "logit_lens.json")
    out = analyse(context, Loss(), "truncation", model=context.model, dataset="coco", data_root=context.data["coco"],
                  split="val2017", limit=limit, dtype=context.dtype, device=context.device, keep=context.sweep(KEEP, QUICK_KEEP))
    return [*_cosine_rows(cosine), *_lens_rows(lens), _loss_row(pd.read_csv(out / "caption_loss.csv"))]


def _cosine_rows(cosine: dict[str, Any]) -> list[dict[str, Any]]:
    """Per prompt type: the image-user text cosine at the last stream minus the first (empty prompts have no user
    text: no curve)."""
    rows = []
    for kind, curves in cosine["curves"].items():
        curve = curves["image_text"]
        values = [v for v in curve["mean"] if v is not None]
        ours = values[-1] - values[0] if values else None
        rows.append(row(f"image-text cosine, last stream minus first ({kind} prompts)", ours,
                        "rises from the middle layers", "Fig. 4.3-4.4 (LLaVA-1.5)", n=max(curve["n_samples"]),
                        note=f"{values[0]:.3f} -> {values[-1]:.3f}" if values else "no user text"))
    return rows


def _lens_rows(lens: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for name, curve in lens.get("caption_words", {}).items():
        estimates = curve.get("estimate") or []
        best = max((v for v in estimates if v is not None), default=None)
        rows.append(row(f"logit lens caption-word {name}, best layer", percent(best), "near 0 early, rising mid-to-late",
                        "Fig. 3.2 (LLaVA-1.5)"))
    return rows


def _loss_row(table: pd.DataFrame) -> dict[str, Any]:
    """Share of the loss reduction (no image tokens -> all) reached with 40% of the image tokens kept, or the
    largest count kept below that."""
    none, full = table.iloc[0], table.iloc[-1]
    budget = 0.4 * full["kept_image_tokens"]
    within = table[table["kept_image_tokens"] <= budget]
    reduction = none["loss"] - full["loss"]
    reached = (none["loss"] - within.iloc[-1]["loss"]) / reduction if reduction > 1e-3 * none["loss"] else None
    return row("share of the loss reduction reached with 40% of the image tokens", percent(reached), 70,
               "§4.3, Fig. 4.6", n=int(full["n"]),
               note=f"loss {none['loss']:.3f} with no image token, {full['loss']:.3f} with all "
                    f"({full['kept_image_tokens']:.0f}); kept {within.iloc[-1]['kept_image_tokens']:.0f}")
