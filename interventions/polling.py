"""Yes/no object polling (POPE, Li et al. 2023; Liu et al. Tables 3, 7, 9; Neo et al.'s binary polling) with and
without interventions.

Every present object of a single-image record is asked about, and as many absent ones per POPE setting, chosen
from the data set's own annotations: `random` (drawn uniformly), `popular` (the absent labels most frequent in
the data set) and `adversarial` (the absent labels that co-occur most often with the image's objects). A question
chosen by several settings is asked once. The answer is Yes when the logit of "Yes" exceeds that of "No".
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import torch

from capture.datasets import Dataset, load_image
from capture.loading import LoadedModel
from capture.prompts import CHAT, POLL_QUESTION, build_prompt
from capture.samples import prepare_sample
from interventions.evaluate import answer_token_ids, condition_fields, forward, norms_if_needed, object_labels, sample_of
from interventions.spec import InterventionSpec
from store import annotation as ann
from store.schema import SAMPLE_ID

NEGATIVES = ("random", "popular", "adversarial")
SETTINGS = "settings"  # answers column: the POPE settings (';'-joined) whose question list holds the question


@dataclass(frozen=True)
class Question:
    """Is `label` in record `index`'s image? `settings`: the POPE settings that ask it (present: all of them)."""

    index: int
    label: str
    present: bool
    settings: tuple[str, ...]


def label_statistics(dataset: Dataset) -> tuple[Counter, Counter]:
    """How many records hold each label, and each unordered pair of labels (sorted tuple) together."""
    frequency, together = Counter(), Counter()
    for record in dataset.records:
        labels = ann.object_labels(record.annotation)
        frequency.update(labels)
        together.update(combinations(labels, 2))
    return frequency, together


def negatives(setting: str, present: list[str], absent: list[str], count: int, statistics: tuple[Counter, Counter],
              rng: random.Random) -> list[str]:
    """`count` absent labels for one POPE setting: random; the most frequent (popular); the most co-occurring with
    the present labels (adversarial). Ties go to the more frequent label, then alphabetical order."""
    frequency, together = statistics
    if setting == "random":
        return rng.sample(absent, min(count, len(absent)))
    if setting == "popular":
        return sorted(absent, key=lambda label: (-frequency[label], label))[:count]
    if setting == "adversarial":
        def cooccurrence(label: str) -> int:
            return sum(together[tuple(sorted((label, other)))] for other in present)
        return sorted(absent, key=lambda label: (-cooccurrence(label), -frequency[label], label))[:count]
    raise ValueError(f"unknown POPE setting {setting!r} (choose from {', '.join(NEGATIVES)})")


def polling_questions(dataset: Dataset, settings: tuple[str, ...] = NEGATIVES, seed: int = 0,
                      targets: list[tuple[int, str]] | None = None) -> list[Question]:
    """The questions of every single-image record with objects: each present label and, per setting, as many
    absent labels (fewer when the data set has fewer). `targets` (record index, label): ask only about those
    present objects (Neo et al.'s selected images), with no absent ones."""
    if targets is not None:
        return [Question(index, label, True, tuple(settings)) for index, label in targets]
    statistics = label_statistics(dataset)
    vocabulary = sorted(statistics[0])
    questions = []
    for index, record in enumerate(dataset.records):
        present = object_labels(record)
        if not present:
            continue
        absent = [label for label in vocabulary if label not in present]
        rng = random.Random(f"{seed}:{record.sample_id}")
        chosen: dict[str, list[str]] = {}
        for setting in settings:
            for label in negatives(setting, present, absent, len(present), statistics, rng):
                chosen.setdefault(label, []).append(setting)
        questions += [Question(index, label, True, tuple(settings)) for label in present]
        questions += [Question(index, label, False, tuple(chosen[label])) for label in sorted(chosen)]
    if not questions:
        raise ValueError(f"dataset {dataset.name} has no single-image records with objects to poll")
    return questions


def poll(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec], means: dict | None = None,
         question: str = POLL_QUESTION, questions: list[Question] | None = None) -> list[dict[str, Any]]:
    """One row per (question, condition): the Yes / No logits and probabilities (softmax over the vocabulary), the
    answer (yes when Yes > No), and how many tokens the intervention touched from which object region."""
    yes, no = answer_token_ids(loaded)
    rows = []
    for asked in questions if questions is not None else polling_questions(dataset):
        record = dataset.records[asked.index]
        images = [load_image(path) for path in record.image_paths]
        prompt = build_prompt(loaded.processor, CHAT, question.format(object=asked.label), len(images))
        prepared = prepare_sample(loaded, prompt, images, record.annotation)
        sample = sample_of(prepared, record.sample_id, asked.label,
                           norms_if_needed(loaded, prepared, list(conditions.values())))
        for name, spec in conditions.items():
            result = forward(loaded, prepared, spec, sample, means)
            logits = result.logits[-1]
            probabilities = torch.softmax(logits.double(), -1)
            rows.append({**condition_fields(name, spec, result.plan), SAMPLE_ID: record.sample_id,
                         "object": asked.label, "present": asked.present, SETTINGS: ";".join(asked.settings),
                         "logit_yes": float(logits[yes]), "logit_no": float(logits[no]),
                         "p_yes": float(probabilities[yes]), "p_no": float(probabilities[no]),
                         "answer_yes": bool(logits[yes] > logits[no])})
    return rows
