"""Evaluation runners, each with and without interventions: yes/no object polling (POPE-style F1, Liu et al.
Tables 3, 7, 9) and the loss of a given continuation such as a caption (Wei ch. 4.3).

Every runner does one forward pass per (question, condition), batch of one, and reads logits only: no generation.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from capture.datasets import Dataset, load_image
from capture.families.base import TokenTable
from capture.loading import LoadedModel
from capture.prompts import build_prompt
from interventions import token_sets
from interventions.apply import intervened, plan_sample
from interventions.spec import InterventionSpec, Knockout

POLL_QUESTION = "Is there a {object} in the image? Answer yes or no."
DESCRIBE = "Describe the image."


@dataclass
class Prepared:
    """One model input: processor tensors, its token table, and what the token sets need."""

    inputs: dict[str, torch.Tensor]
    table: TokenTable
    annotation: dict[str, Any]
    image_sizes: list[tuple[int, int]]


def prepare(loaded: LoadedModel, images: list, prompt: str, annotation: dict[str, Any]) -> Prepared:
    inputs = loaded.adapter.processor_inputs(loaded.processor, prompt, images)
    sizes = [(image.height, image.width) for image in images]
    table = loaded.adapter.token_table(loaded.processor, loaded.config, inputs, sizes)
    return Prepared(inputs, table, annotation, sizes)


def forward_logits(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec,
                   means: dict | None = None, label: str | None = None, last: int = 1) -> torch.Tensor:
    """Logits (last, vocab) float32 of the final `last` positions with `spec` applied."""
    plan, _ = plan_sample(spec, prepared.table, prepared.annotation, prepared.image_sizes, means, label)
    batch = {key: value.to(loaded.device) for key, value in prepared.inputs.items()}
    if "pixel_values" in batch and batch["pixel_values"].is_floating_point():
        batch["pixel_values"] = batch["pixel_values"].to(loaded.dtype)
    with torch.inference_mode(), intervened(loaded.adapter.decoder(loaded.model), plan):
        output = loaded.model(**batch, logits_to_keep=last)
    return output.logits[0].float()


def answer_token_ids(loaded: LoadedModel, words: tuple[str, ...] = ("Yes", "No")) -> list[int]:
    """First token of each answer word; they must differ."""
    tokenizer = loaded.processor.tokenizer
    ids = [tokenizer.encode(word, add_special_tokens=False)[0] for word in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"answers {words} start with the same token; choose other answer words")
    return ids


def polling_questions(dataset: Dataset, seed: int = 0) -> list[tuple[int, str, bool]]:
    """(record index, object label, present) for every single-image record with objects: each present label, and
    as many absent labels drawn at random from the dataset's other labels (POPE's random setting)."""
    vocabulary = sorted({o["label"] for r in dataset.records for o in r.annotation.get("objects", [])})
    rng = random.Random(seed)
    questions = []
    for index, record in enumerate(dataset.records):
        present = sorted({o["label"] for o in record.annotation.get("objects", [])})
        if not present or len(record.image_paths) != 1:
            continue
        absent = [label for label in vocabulary if label not in present]
        questions += [(index, label, True) for label in present]
        questions += [(index, label, False) for label in rng.sample(absent, min(len(present), len(absent)))]
    if not questions:
        raise ValueError(f"dataset {dataset.name} has no single-image records with objects to poll")
    return questions


def poll(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec], means: dict | None = None,
         question: str = POLL_QUESTION, seed: int = 0) -> list[dict[str, Any]]:
    """One row per (question, condition): the Yes / No logits and the answer (yes when Yes > No)."""
    yes, no = answer_token_ids(loaded)
    rows = []
    for index, label, present in polling_questions(dataset, seed):
        record = dataset.records[index]
        images = [load_image(path) for path in record.image_paths]
        prompt = build_prompt(loaded.processor, "chat", question.format(object=label), len(images))
        prepared = prepare(loaded, images, prompt, record.annotation)
        for name, spec in conditions.items():
            logits = forward_logits(loaded, prepared, spec, means, label)[-1]
            rows.append({"condition": name, "sample_id": record.sample_id, "object": label, "present": present,
                         "logit_yes": float(logits[yes]), "logit_no": float(logits[no]),
                         "answer_yes": bool(logits[yes] > logits[no])})
    return rows


def polling_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition: accuracy, precision, recall, F1 (positive class: yes) and the yes ratio, in %."""
    scores = []
    for condition in dict.fromkeys(row["condition"] for row in rows):
        mine = [row for row in rows if row["condition"] == condition]
        truth = np.array([row["present"] for row in mine])
        said = np.array([row["answer_yes"] for row in mine])
        tp, fp, fn = int((truth & said).sum()), int((~truth & said).sum()), int((truth & ~said).sum())
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores.append({"condition": condition, "n": len(mine), "accuracy": 100 * float((truth == said).mean()),
                       "precision": 100 * precision, "recall": 100 * recall, "f1": 100 * f1,
                       "yes_ratio": 100 * float(said.mean())})
    return scores


def control_conditions(spec: InterventionSpec, n_kv_heads: int, seed: int = 0) -> dict[str, InterventionSpec]:
    """Liu et al.'s controls (A.6.3): the same number of (layer, kv_head) units in the same layers, drawn from the
    units the spec does not block ("input-dependent") and from all units ("random")."""
    rng = random.Random(seed)
    controls: dict[str, list[Knockout]] = {"input-dependent": [], "random": []}
    for knockout in spec.knockout:
        if any(head is None for _, head in knockout.units):
            raise ValueError("controls need per-head units (layer, kv_head); this knockout blocks whole layers")
        everything = [(layer, head) for layer in sorted(knockout.layers()) for head in range(n_kv_heads)]
        others = [unit for unit in everything if unit not in set(knockout.units)]
        count = len(knockout.units)
        if len(others) < count:
            raise ValueError(f"only {len(others)} other units in layers {sorted(knockout.layers())} for a control of "
                             f"{count}: block fewer units or use more layers")
        controls["input-dependent"].append(replace(knockout, units=tuple(sorted(rng.sample(others, count)))))
        controls["random"].append(replace(knockout, units=tuple(sorted(rng.sample(everything, count)))))
    return {f"{spec.name} control: {name}": replace(spec, name=f"{spec.name} control: {name}", knockout=tuple(entries))
            for name, entries in controls.items()}


def continuation_loss(loaded: LoadedModel, prepared: Prepared, n_continuation: int, spec: InterventionSpec,
                      means: dict | None = None) -> float:
    """Mean cross-entropy (nats per token) of the last `n_continuation` tokens of the input, each predicted from
    the tokens before it."""
    logits = forward_logits(loaded, prepared, spec, means, last=n_continuation + 1)[:-1]
    targets = prepared.inputs["input_ids"][0, -n_continuation:].to(logits.device)
    return float(torch.nn.functional.cross_entropy(logits, targets))


def caption_losses(loaded: LoadedModel, dataset: Dataset, keeps: list[int | None], instruction: str = DESCRIBE,
                   means: dict | None = None) -> list[dict[str, Any]]:
    """Loss of each record's first caption after `instruction`, keeping the first n image tokens for each n in
    `keeps` (None: all of them)."""
    rows = []
    tokenizer = loaded.processor.tokenizer
    for record in dataset.records:
        captions = record.annotation.get("captions") or []
        if not captions:
            continue
        images = [load_image(path) for path in record.image_paths]
        prefix = build_prompt(loaded.processor, "chat", instruction, len(images))
        prepared = prepare(loaded, images, prefix + captions[0], record.annotation)
        # caption tokens as tokenised in context (a BPE merge may cross the boundary)
        n_caption = len(tokenizer(prefix + captions[0])["input_ids"]) - len(tokenizer(prefix)["input_ids"])
        n_image = len(token_sets.image_positions(prepared.table))
        for keep in keeps:
            spec = InterventionSpec(name=f"keep {keep}", keep_image_tokens=keep)
            rows.append({"sample_id": record.sample_id, "keep": "all" if keep is None else keep,
                         "kept_image_tokens": n_image if keep is None else min(keep, n_image),
                         "loss": continuation_loss(loaded, prepared, n_caption, spec, means)})
    if not rows:
        raise ValueError(f"dataset {dataset.name} has no records with captions")
    return rows
