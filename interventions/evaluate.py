"""Evaluation runners, each with and without interventions: yes/no object polling (POPE-style F1, Liu et al.
Tables 3, 7, 9), VQA with a prefilled answer prefix, generated descriptions that name the objects (Neo et al.), and
the loss of a given continuation such as a caption (Wei ch. 4.3).

Batch of one. Generation re-runs the whole sequence at every step (no KV cache), so an intervention applies to
the generated tokens exactly as to the prompt (they join the "text", "question" and "last" sets).
"""

from __future__ import annotations

import random
import re
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from capture.datasets import Dataset, Record, load_image
from capture.loading import LoadedModel
from capture.prompts import CHAT, DEFAULT_PROMPT, POLL_QUESTION, build_prompt
from capture.samples import Prepared, prepare_sample
from interventions import token_sets
from interventions.apply import intervened, plan_sample
from interventions.spec import InterventionSpec, Knockout
from store import annotation as ann
from store.schema import SAMPLE_ID

DESCRIBE = DEFAULT_PROMPT
KEEP_ALL = "all"  # caption_losses' `keep` of the runs that keep every image token (`--keep ...,all`)


def forward_logits(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec,
                   means: dict | None = None, label: str | None = None, last: int = 1) -> torch.Tensor:
    """Logits (last, vocab) float32 of the final `last` positions with `spec` applied."""
    plan, _ = plan_sample(spec, prepared.table, prepared.annotation, prepared.image_sizes, means, label)
    with torch.inference_mode(), intervened(loaded.adapter, loaded.model, plan):
        output = loaded.model(**loaded.model_inputs(prepared.inputs), logits_to_keep=last)
    return output.logits[0].float()


def answer_token_ids(loaded: LoadedModel, words: tuple[str, ...] = ("Yes", "No")) -> list[int]:
    """First token of each answer word; they must differ."""
    shared, first = answer_tokens(loaded, words)
    if shared:
        raise ValueError(f"answers {words} start with the same token; choose other answer words")
    return first


def answer_tokens(loaded: LoadedModel, words: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """The tokens all `words` start with, and each word's first token after them (these must differ)."""
    encoded = [loaded.processor.tokenizer.encode(word, add_special_tokens=False) for word in words]
    shared = 0
    while all(len(e) > shared + 1 for e in encoded) and len({e[shared] for e in encoded}) == 1:
        shared += 1
    first = [e[shared] for e in encoded]
    if len(set(first)) != len(first):
        raise ValueError(f"answers {words} are not told apart by one token after their shared start")
    return encoded[0][:shared], first


def _object_labels(record: Record) -> list[str]:
    """Sorted labels of the record's objects; none unless it is a single image (objects belong to image 0)."""
    if len(record.image_paths) != 1:
        return []
    return ann.object_labels(record.annotation)


def _label_vocabulary(dataset: Dataset) -> list[str]:
    """Every object label of the dataset, multi-image records included."""
    return sorted({label for record in dataset.records for label in ann.object_labels(record.annotation)})


def polling_questions(dataset: Dataset, seed: int = 0) -> list[tuple[int, str, bool]]:
    """(record index, object label, present) for every single-image record with objects: each present label, and
    as many absent labels drawn at random from the dataset's other labels (POPE's random setting)."""
    vocabulary = _label_vocabulary(dataset)
    rng = random.Random(seed)
    questions = []
    for index, record in enumerate(dataset.records):
        present = _object_labels(record)
        if not present:
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
        prompt = build_prompt(loaded.processor, CHAT, question.format(object=label), len(images))
        prepared = prepare_sample(loaded, prompt, images, record.annotation)
        for name, spec in conditions.items():
            logits = forward_logits(loaded, prepared, spec, means, label)[-1]
            rows.append({"condition": name, SAMPLE_ID: record.sample_id, "object": label, "present": present,
                         "logit_yes": float(logits[yes]), "logit_no": float(logits[no]),
                         "answer_yes": bool(logits[yes] > logits[no])})
    return rows


def polling_scores(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per condition: accuracy, precision, recall, F1 (positive class: yes) and the yes ratio, in %."""
    scores = []
    for condition, mine in _by_condition(rows):
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


def _by_condition(rows: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Rows grouped by their "condition", in first-seen order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["condition"], []).append(row)
    return list(groups.items())


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


def layer_window_conditions(spec: InterventionSpec, size: int) -> dict[str, InterventionSpec]:
    """The spec's knockouts restricted to each window of `size` consecutive layers among those they block."""
    layers = sorted({layer for knockout in spec.knockout for layer in knockout.layers()})
    conditions = {}
    for start in range(0, len(layers), size):
        window = set(layers[start : start + size])
        knockouts = tuple(replace(k, units=tuple(u for u in k.units if u[0] in window)) for k in spec.knockout)
        name = f"{spec.name} layers {min(window)}-{max(window)}"
        conditions[name] = replace(spec, name=name, knockout=tuple(k for k in knockouts if k.units))
    return conditions


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
        captions = record.annotation.get(ann.CAPTIONS) or []
        if not captions:
            continue
        images = [load_image(path) for path in record.image_paths]
        prefix = build_prompt(loaded.processor, CHAT, instruction, len(images))
        prepared = prepare_sample(loaded, prefix + captions[0], images, record.annotation)
        # caption tokens as tokenised in context (a BPE merge may cross the boundary)
        n_caption = len(tokenizer(prefix + captions[0])["input_ids"]) - len(tokenizer(prefix)["input_ids"])
        n_image = len(token_sets.image_positions(prepared.table))
        for keep in keeps:
            spec = InterventionSpec(name=f"keep {keep}", keep_image_tokens=keep)
            rows.append({SAMPLE_ID: record.sample_id, "keep": KEEP_ALL if keep is None else keep,
                         "kept_image_tokens": n_image if keep is None else min(keep, n_image),
                         "loss": continuation_loss(loaded, prepared, n_caption, spec, means)})
    if not rows:
        raise ValueError(f"dataset {dataset.name} has no records with captions")
    return rows


def vqa(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec], answer_prefix: str = "",
        means: dict | None = None) -> list[dict[str, Any]]:
    """Records with a question (`text`) and an `answer`: the prompt ends with `answer_prefix` (e.g. "The colour is"),
    and the model's choice is the answer, among all the dataset's answers, whose first token has the highest logit."""
    records = [r for r in dataset.records if r.text and ann.ANSWER in r.annotation]
    if not records:
        raise ValueError(f"dataset {dataset.name} has no records with a question (text) and an answer")
    choices = sorted({str(r.annotation[ann.ANSWER]) for r in records})
    shared, ids = answer_tokens(loaded, tuple((" " if answer_prefix else "") + choice for choice in choices))
    rows = []
    for record in records:
        images = [load_image(path) for path in record.image_paths]
        prompt = build_prompt(loaded.processor, CHAT, record.text, len(images)) + answer_prefix
        prepared = prepare_sample(loaded, prompt, images, record.annotation)
        for token in shared:  # the answers' common start (e.g. a space token) is part of the prefix
            prepared = prepared.with_token(token)
        for name, spec in conditions.items():
            logits = forward_logits(loaded, prepared, spec, means)[-1]
            chosen = choices[int(torch.argmax(logits[ids]))]
            answer = str(record.annotation[ann.ANSWER])
            rows.append({"condition": name, SAMPLE_ID: record.sample_id, ann.ANSWER: answer, "chosen": chosen,
                         "correct": chosen == answer})
    return rows


def generate(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec, max_new_tokens: int,
             means: dict | None = None) -> list[int]:
    """Greedy continuation (token ids) with `spec` applied at every step, stopping at the end-of-sequence token."""
    tokenizer = loaded.processor.tokenizer
    generated: list[int] = []
    current = prepared
    for _ in range(max_new_tokens):
        token = int(torch.argmax(forward_logits(loaded, current, spec, means)[-1]))
        if token == tokenizer.eos_token_id:
            break
        generated.append(token)
        current = current.with_token(token)
    return generated


def describe(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec],
             instruction: str = DESCRIBE, max_new_tokens: int = 24, means: dict | None = None) -> list[dict[str, Any]]:
    """One row per (image with objects, condition): the generated description, how many of the image's object
    labels it names, and how many labels of objects absent from the image it names (hallucinations)."""
    vocabulary = _label_vocabulary(dataset)
    rows = []
    for record in dataset.records:
        present = _object_labels(record)
        if not present:
            continue
        images = [load_image(path) for path in record.image_paths]
        prepared = prepare_sample(loaded, build_prompt(loaded.processor, CHAT, instruction, 1), images, record.annotation)
        for name, spec in conditions.items():
            text = loaded.processor.tokenizer.decode(generate(loaded, prepared, spec, max_new_tokens, means))
            named = {label for label in vocabulary if re.search(rf"\b{re.escape(label)}s?\b", text, re.IGNORECASE)}
            rows.append({"condition": name, SAMPLE_ID: record.sample_id, "description": text,
                         "objects": len(present), "objects_named": len(named & set(present)),
                         "absent_named": len(named - set(present))})
    if not rows:
        raise ValueError(f"dataset {dataset.name} has no single-image records with objects to describe")
    return rows


def rate_scores(rows: list[dict[str, Any]], numerators: dict[str, tuple[str, str | None]]) -> list[dict[str, Any]]:
    """Per condition, each named rate in %: sum(numerator) / sum(denominator column), or / rows when None."""
    scores = []
    for condition, mine in _by_condition(rows):
        score: dict[str, Any] = {"condition": condition, "n": len(mine)}
        for name, (numerator, denominator) in numerators.items():
            total = sum(row[denominator] for row in mine) if denominator else len(mine)
            score[name] = 100 * sum(row[numerator] for row in mine) / max(total, 1)
        scores.append(score)
    return scores
