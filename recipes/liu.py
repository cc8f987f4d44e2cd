"""Liu et al., *Visual Representations inside the Language Model*: image values probed zero-shot (§3.1, Tables 1,
2, 4, 6), input-agnostic image keys (§3.2, A.6.1) and the knockout of text queries to them (Tables 3, 7, 8).
Their numbers are for LLaVA-OneVision 7B unless a model is named."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

import store.reader
from analyses import figures, heads, intervals, probing
from analyses.commands import Clustering, Correspondence, Probing, Variance
from analyses.commands.probing import UNIT
from analyses.ground_truth import object_masks
from analyses.tokens import captured_samples, n_images, sample_annotation
from capture.datasets import open_dataset
from capture.datasets.mme import PERCEPTION
from interventions.commands import Spec, Vqa
from recipes.recipe import Context, row
from recipes.scores import mme_scores, pope_f1
from recipes.steps import analyse, capture, percent, read_json
from store import annotation as ann
from store.schema import KEYS, KV_HEAD, LAYER, SAMPLE, TokenSet

IMAGE, ALL = TokenSet.IMAGE.value, TokenSet.ALL.value
NONE, KNOCKOUT = "none", "late input-agnostic keys"  # the conditions compared (the spec's name)
MME_SUBTASKS = PERCEPTION[:4]  # existence, count, position, color: Liu et al.'s four (after Zhang et al. 2025)
MME_PAPER = {NONE: 173.3, KNOCKOUT: 179.0}
T1 = "Table 1 (LM image value, max over heads)"
KEYS_STORE = {"layers": ALL, "tokens": IMAGE, "ffn_topk": 0}  # the cache's keys, every layer


def _best_row(result: str, best: dict[str, Any], paper: float, source: str, n: int | None, scale: float = 100.0,
              note: str = "") -> dict[str, Any]:
    """A row from an analysis's best (layer, head): the max over heads, as the paper reports."""
    score = best.get("score", best.get("estimate"))
    where = f"layer {best.get(LAYER)}, head {best.get(KV_HEAD)}"
    return row(result, None if score is None else scale * score, paper, source, n=n, note=f"{where}. {note}".strip())


# Table 4's prefixes for SPair-71k: none, the pair's class name, and (the control) an unrelated sentence of ours
SPAIR_PREFIXES = (("spair", None, 46.1, T1, ""),
                  ("spair-prefixed", "{category} ", 46.5, "Table 4 (prefixing: the class name)", " (class-name prefix)"),
                  ("spair-random-prefix", "A wooden table with warm bread, honey and a pot of tea beside a bowl of figs. ",
                   45.8, "Table 4 (prefixing-random; their sentence differs)", " (unrelated-sentence prefix)"))


def semantic_correspondence(context: Context) -> list[dict[str, Any]]:
    """SPair-71k test pairs: PCK@0.1 of value nearest neighbours, without a prefix, with the class name before the
    image, and with an unrelated sentence there (the control)."""
    rows = []
    for name, prefix, paper, source, label in SPAIR_PREFIXES:
        store_path = capture(context, name, "spair", context.count(None), split="test", tokens=IMAGE, prefix=prefix)
        out = analyse(context, Correspondence(), name, store=store_path, alpha=0.1)
        semantic = read_json(out / "correspondence.json")["semantic"]
        rows.append(_best_row(f"SPair-71k PCK@0.1{label}", semantic["best"], paper, source, semantic["n_keypoints"],
                              note=f"{semantic['n_pairs']} pairs"))
    return rows


def temporal_correspondence(context: Context) -> list[dict[str, Any]]:
    """DAVIS-2017 val: the first frame's masks propagated by value similarity (7 previous frames, top 5, radius
    12); J&F, J and F of the best head."""
    store_path = capture(context, "davis", "davis", context.count(None), split="val", tokens=IMAGE)
    temporal = read_json(analyse(context, Correspondence(), "davis", store=store_path) / "correspondence.json")["temporal"]
    n = temporal["n_videos"]
    return [_best_row("DAVIS-2017 J&F", temporal["best"], 65.8, T1, n),
            _best_row("DAVIS-2017 J", temporal["best_J"], 62.6, T1, n),
            _best_row("DAVIS-2017 F", temporal["best_F"], 67.2, T1, n)]


def co_segmentation(context: Context) -> list[dict[str, Any]]:
    """MSRC co-segmentation: k-means over the value tokens of each class's images, Amir et al.'s attention saliency
    (the last position's attention, captured) picks the foreground; J_m of the held-out best head."""
    store_path = capture(context, "msrc", "msrc", context.count(None), attention_last=True)
    co = read_json(analyse(context, Clustering(), "msrc", store=store_path) / "clustering.json")["co_segmentation"]
    return [_held_out_row("MSRC co-segmentation J_m", co, 61.6, f"{T1}; Qwen2.5-VL 63.9, LLaVA-NeXT 54.4 (Table 6)")]


def _held_out_row(result: str, entry: dict[str, Any], paper: float, source: str) -> dict[str, Any]:
    """A row from a held-out best head (chosen on one half, reported on the other) and its stream-0 baseline."""
    best, baseline = entry["best"], entry.get("baseline") or {}
    note = f"layer {best[LAYER]}, head {best[KV_HEAD]}, chosen on the other half"
    if baseline.get("estimate") is not None:
        note += f"; input visual representation (stream 0): {percent(baseline['estimate']):.1f}"
    return row(result, percent(best["estimate"]), paper, source, percent(best["low"]), percent(best["high"]), best["n"],
               note)


def few_shot_segmentation(context: Context) -> list[dict[str, Any]]:
    """Pascal-5i val, folds 0-3: 5-shot linear probes on value tokens (50 episodes per split); class-mean mIoU."""
    store_path = capture(context, "pascal5i", "pascal5i", context.count(None), split="val", subset="0,1,2,3")
    out = analyse(context, Probing(), "pascal5i", store=store_path, shots=5, episodes=context.sweep(50, 5))
    return [_held_out_row("Pascal-5i 5-shot foreground mIoU", read_json(out / "probing.json")["linear_probe"], 26.2,
                          f"{T1}; Qwen2.5-VL 28.5, LLaVA-NeXT 21.6 (Table 6)")]


def referring_segmentation(context: Context) -> list[dict[str, Any]]:
    """RefCOCO val (unc): each expression captured as text alone; its final token's value segments the image's
    values by dot product (the top half of the scores, min-max scaled); IoU with the referred object's mask."""
    limit = context.count(None)
    images = store.reader.open(capture(context, "refcoco", "refcoco", limit, split="val", tokens=IMAGE))
    texts = store.reader.open(capture(context, "refcoco-text", "refcoco", limit, split="val", text_only=True))
    text_index = {str(s): i for i, s in enumerate(texts.sample_id.values)}
    samples = [int(s) for s in captured_samples(images)]
    referred = {s: next(iter(object_masks(images, s).items())) for s in samples}  # the referred object: label, mask
    counts = [probing.text_segmentation(images, [s], texts, lambda s: text_index[str(images.sample_id.values[s])],
                                        lambda s: referred[s][1], label=referred[s][0], splits=np.array([split]))
              .drop_vars("iou").rename({SAMPLE: UNIT})
              for s, split in zip(samples, heads.split(len(samples)), strict=True)]
    counts = xr.concat(counts, UNIT)
    best = probing.held_out_miou(counts).as_dict()
    out = context.folder("refcoco")
    (out / "referring_segmentation.json").write_text(json.dumps(best, indent=1, default=str))
    figure = figures.layer_head_scores(probing.foreground_miou(counts, heads.REPORT), "mIoU",
                                       "RefCOCO: expression-token segmentation (values)", held_out=best)
    figure.savefig(out / "referring_segmentation.png")
    context.written += [out / "referring_segmentation.json", out / "referring_segmentation.png"]
    return [_held_out_row("RefCOCO referring segmentation mIoU", {"best": best}, 64.8,
                          f"{T1}; Qwen2.5-VL 65.8, LLaVA-NeXT 62.6 (Table 6)")]


def _key_variance(context: Context) -> tuple[dict[str, Any], Any]:
    """Keys of every layer for 1,000 COCO val images, their variance per (layer, KV head) across images on the base
    view's cells, split at the histogram valley (Liu et al. A.6.1): the key list and its folder."""
    store_path = capture(context, "coco-keys", "coco", context.count(1000), split="val2017", **KEYS_STORE)
    out = analyse(context, Variance(), "key-variance", store=store_path, array=KEYS, part="base", method="valley")
    return read_json(out / "input_agnostic_keys.json"), out


def key_variance(context: Context) -> list[dict[str, Any]]:
    """The variance distribution, its valley threshold and the dip test; input-agnostic keys per layer group."""
    keys, _ = _key_variance(context)
    threshold = keys["threshold"]
    dip = threshold["bimodality"]
    counts = keys["counts"]
    note = ", ".join(f"{name} {counts[name]}" for name in keys["layer_groups"])
    return [row("valley threshold of the key variance", threshold["value"], 450, "A.6.1, Fig. 14 (modes at 200 and 600)",
                n=keys["n_samples"], note=f"input-agnostic keys per layer group: {note}"),
            row("dip test p-value (bimodal below 0.05)", dip["p_value"], "bimodal", "§3.2, Fig. 14", n=dip["n"],
                note=f"dip {dip['dip']:.4f}"),
            row("input-agnostic keys in the late layers", counts.get("late"), "present (re-emerge)", "§3.2, Fig. 4, 15")]


def knockout(context: Context) -> list[dict[str, Any]]:
    """Text queries blocked from the late layers' input-agnostic image keys (the base view's tokens whose variance
    was measured), on POPE's released questions; F1 (answer Yes as positive) with and without."""
    keys, variance_out = _key_variance(context)
    spec = context.folder("knockout") / "late-input-agnostic.json"
    context.written += Spec()(keys=variance_out / "input_agnostic_keys.json", group="late", out=spec,
                              name=KNOCKOUT)
    out = analyse(context, Vqa(), "knockout", model=context.model, dataset="pope", data_root=context.data["pope"],
                  limit=context.count(None), dtype=context.dtype, device=context.device, spec=(spec,))
    answers = pd.read_csv(out / "vqa_answers.csv")
    rows = []
    for condition, paper in ((NONE, 78.1), (KNOCKOUT, 81.2)):
        f1 = pope_f1(answers[answers["condition"] == condition])
        rows.append(row(f"POPE F1, knockout: {condition}", f1.estimate, paper, "Table 3, 7, 9", f1.low, f1.high, f1.n,
                        f"{keys['counts'].get('late', 0)} late keys blocked; random, popular, adversarial pooled"))
    if "mme" in context.data:
        rows += _mme_knockout(context, spec)
    return rows


def _mme_knockout(context: Context, spec: Path) -> list[dict[str, Any]]:
    """The same knockout on MME's count, color, position and existence subtasks (Liu et al. Tables 3, 8): each
    subtask's score (accuracy + accuracy+) and MME*, their mean."""
    out = analyse(context, Vqa(), "knockout-mme", model=context.model, dataset="mme", data_root=context.data["mme"],
                  subset=",".join(MME_SUBTASKS), limit=context.count(None), dtype=context.dtype, device=context.device,
                  spec=(spec,))
    records = open_dataset("mme", context.data["mme"], None, context.count(None), ",".join(MME_SUBTASKS)).records
    subtask = {r.sample_id: r.annotation[ann.SUBSET] for r in records}
    image = {r.sample_id: str(r.annotation[ann.IMAGE_ID]) for r in records}
    answers = pd.read_csv(out / "vqa_answers.csv")
    rows = []
    for condition, paper in ((NONE, MME_PAPER[NONE]), (KNOCKOUT, MME_PAPER[KNOCKOUT])):
        scores = mme_scores(answers[answers["condition"] == condition], subtask, image)
        measured = ", ".join(f"{name} {value:.1f}" for name, value in scores.items() if name != "MME*")
        rows.append(row(f"MME* (count, color, position, existence), knockout: {condition}", scores["MME*"], paper,
                        "Table 3; per subtask Table 8", n=int((answers["condition"] == condition).sum()),
                        note=f"ours: {measured}"))
    return rows


# Table 5: the MLM's accuracy on the paired tasks, and the share of items where its image values are right
BLINK_PAIRED = {"Art_Style": (53.8, 81.1), "Visual_Similarity": (79.3, 91.1)}  # MLM, value (= union - value wrong)


def paired_tasks(context: Context) -> list[dict[str, Any]]:
    """BLINK's Art Style and Visual Similarity (val): the reference's mean-pooled image values against each
    option's, the most cosine-similar option chosen (the held-out best head); and the MLM answering the same items
    as questions (choice of the option letter)."""
    rows = []
    for task, (mlm_paper, value_paper) in BLINK_PAIRED.items():
        store_path = capture(context, f"blink-{task}", "blink", context.count(None), split="val", subset=task,
                             tokens=IMAGE)
        ds = store.reader.open(store_path)
        trials = [probing.ChoiceTrial((int(s), 0), [(int(s), i) for i in range(1, n_images(ds, s))],
                                      ord(str(sample_annotation(ds, s)[ann.ANSWER]).strip("()")) - ord("A"))
                  for s in captured_samples(ds) if n_images(ds, s) >= 3]
        result = probing.paired_choice(ds, trials)
        best = probing.held_out_accuracy(result).as_dict()
        figure = context.folder(f"blink-{task}") / "paired_choice.png"
        figures.layer_head_scores(result.accuracy, "accuracy (all trials)", f"BLINK {task}: values choose the option",
                                  result.attrs["chance"], baseline_label="chance", held_out=best).savefig(figure)
        context.written.append(figure)
        rows.append(row(f"BLINK {task}: image values choose the option (mean-pooled cosine)", percent(best["estimate"]),
                        value_paper, "Table 5 (union minus 'value wrong, MLM right')", percent(best["low"]),
                        percent(best["high"]), best["n"], f"layer {best[LAYER]}, head {best[KV_HEAD]}, chosen on the "
                                                          "other half"))
        out = analyse(context, Vqa(), f"blink-{task}-vqa", model=context.model, dataset="blink",
                      data_root=context.data["blink"], split="val", subset=task, limit=context.count(None),
                      dtype=context.dtype, device=context.device)
        answers = pd.read_csv(out / "vqa_answers.csv")
        accuracy = intervals.binomial(int(answers["correct"].sum()), len(answers))
        rows.append(row(f"BLINK {task}: the MLM answers", percent(accuracy.estimate), mlm_paper, "Table 5 (MLM right)",
                        percent(accuracy.low), percent(accuracy.high), accuracy.n))
    return rows
