"""Forward passes with an intervention, and the evaluation runners other than polling (`polling`): VQA with a
prefilled answer prefix, generated descriptions that name the objects (Neo et al.), and the loss of a given
continuation such as a caption (Wei ch. 4.3).

Batch of one. Generation re-runs the whole sequence at every step (no KV cache), so an intervention applies to
the generated tokens exactly as to the prompt (they join the "text", "question" and "last" sets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from capture.datasets import Dataset, Record, load_image
from capture.loading import LoadedModel
from capture.prompts import CHAT, DEFAULT_PROMPT, build_prompt
from capture.samples import Prepared, prepare_sample
from interventions import token_sets
from interventions.apply import SamplePlan, intervened, plan_sample
from interventions.spec import NONE, InterventionSpec
from store import annotation as ann
from store.schema import SAMPLE_ID

DESCRIBE = DEFAULT_PROMPT
KEEP_ALL = "all"  # caption_losses' `keep` of the runs that keep every image token (`--keep ...,all`)
CONDITION, GROUP_OF, DRAW = "condition", "group_of", "draw"  # columns of every answers table


@dataclass(frozen=True)
class Forward:
    """Logits (last, vocab) float32 of the final positions, and the plan that produced them."""

    logits: torch.Tensor
    plan: SamplePlan


class _Stop(Exception):
    """Raised by a hook to end a forward pass once it has what it needs."""


def input_norms(loaded: LoadedModel, prepared: Prepared) -> np.ndarray:
    """(seq,) float64: the L2 norm of every position's input embedding (image features merged in), from a forward
    pass stopped at the decoder's input."""
    found: dict[str, torch.Tensor] = {}

    def hook(module: torch.nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        found["embeds"] = kwargs["inputs_embeds"]
        raise _Stop

    handle = loaded.adapter.decoder(loaded.model).register_forward_pre_hook(hook, with_kwargs=True)
    try:
        with torch.inference_mode():
            loaded.model(**loaded.model_inputs(prepared.inputs))
    except _Stop:
        pass
    finally:
        handle.remove()
    return found["embeds"][0].double().norm(dim=-1).cpu().numpy()


def sample_of(prepared: Prepared, sample_id: str, label: str | None = None,
              norms: np.ndarray | None = None) -> token_sets.Sample:
    """The token-set view of a prepared input (`norms` padded with NaN over tokens appended since)."""
    if norms is not None and len(norms) < len(prepared.table):
        norms = np.concatenate([norms, np.full(len(prepared.table) - len(norms), np.nan)])
    return token_sets.Sample(prepared.table, prepared.annotation, prepared.image_sizes, label, sample_id, norms)


def norms_if_needed(loaded: LoadedModel, prepared: Prepared, specs: list[InterventionSpec]) -> np.ndarray | None:
    """`input_norms` when a spec uses the register set, else None (no extra pass)."""
    return input_norms(loaded, prepared) if any(spec.needs_norms for spec in specs) else None


def forward(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec, sample: token_sets.Sample | None = None,
            means: dict | None = None, last: int = 1) -> Forward:
    """The model on `prepared` with `spec` resolved on `sample` (default: the input itself, no label or id)."""
    sample = sample or sample_of(prepared, "")
    plan, _ = plan_sample(spec, sample, means)
    with torch.inference_mode(), intervened(loaded.adapter, loaded.model, plan):
        output = loaded.model(**loaded.model_inputs(prepared.inputs), logits_to_keep=last)
    return Forward(output.logits[0].float(), plan)


def forward_logits(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec,
                   means: dict | None = None, label: str | None = None, last: int = 1) -> torch.Tensor:
    """Logits (last, vocab) float32 of the final `last` positions with `spec` applied (no sample id: random sets
    are seeded by the spec alone)."""
    return forward(loaded, prepared, spec, sample_of(prepared, "", label), means, last).logits


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


def object_labels(record: Record) -> list[str]:
    """Sorted labels of the record's objects; none unless it is a single image (objects belong to image 0)."""
    if len(record.image_paths) != 1:
        return []
    return ann.object_labels(record.annotation)


def label_vocabulary(dataset: Dataset) -> list[str]:
    """Every object label of the dataset, multi-image records included."""
    return sorted({label for record in dataset.records for label in ann.object_labels(record.annotation)})


def condition_fields(name: str, spec: InterventionSpec, plan: SamplePlan | None = None) -> dict[str, Any]:
    """The columns every answers row starts with: the condition, the reported condition it is a draw of, the
    draw, and how many tokens the intervention touched and from which object region."""
    fields: dict[str, Any] = {CONDITION: name, GROUP_OF: spec.group_of or name, DRAW: spec.draw}
    if plan is not None:
        fields |= {"tokens_touched": plan.n_tokens, "object_region": plan.object_region}
    return fields


def continuation_loss(loaded: LoadedModel, prepared: Prepared, n_continuation: int, spec: InterventionSpec,
                      means: dict | None = None, sample: token_sets.Sample | None = None) -> float:
    """Mean cross-entropy (nats per token) of the last `n_continuation` tokens of the input, each predicted from
    the tokens before it, with `spec` resolved on `sample` (default: the input, no label or id)."""
    return _continuation(loaded, prepared, n_continuation, spec, means, sample)[0]


def _continuation(loaded: LoadedModel, prepared: Prepared, n_continuation: int, spec: InterventionSpec,
                  means: dict | None, sample: token_sets.Sample | None) -> tuple[float, SamplePlan]:
    """`continuation_loss` and the plan that produced it."""
    result = forward(loaded, prepared, spec, sample or sample_of(prepared, ""), means, last=n_continuation + 1)
    targets = prepared.inputs["input_ids"][0, -n_continuation:].to(result.logits.device)
    return float(torch.nn.functional.cross_entropy(result.logits[:-1], targets)), result.plan


def with_keep(spec: InterventionSpec, keep: int | None) -> InterventionSpec:
    """`spec` with only the first `keep` image tokens entering the model (None: all); a spec that truncates
    image tokens itself is refused (the loss varies that with `keep`)."""
    if spec.keep_image_tokens is not None:
        raise ValueError(f"spec {spec.name!r} sets keep_image_tokens itself; the loss varies it with --keep")
    return replace(spec, keep_image_tokens=keep)


def caption_losses(loaded: LoadedModel, dataset: Dataset, keeps: list[int | None], instruction: str = DESCRIBE,
                   means: dict | None = None,
                   conditions: dict[str, InterventionSpec] | None = None) -> list[dict[str, Any]]:
    """Loss of each record's first caption after `instruction`, under each condition (default: "none" only),
    keeping the first n image tokens for each n in `keeps` (None: all of them); one row per (record, condition,
    keep), with the condition's columns (`condition_fields`)."""
    conditions = conditions or {NONE: InterventionSpec()}
    combined = {(name, keep): with_keep(spec, keep) for name, spec in conditions.items() for keep in keeps}
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
        sample = sample_of(prepared, record.sample_id, None, norms_if_needed(loaded, prepared, list(conditions.values())))
        for (name, keep), spec in combined.items():
            loss, plan = _continuation(loaded, prepared, n_caption, spec, means, sample)
            rows.append({**condition_fields(name, spec, plan), SAMPLE_ID: record.sample_id,
                         "keep": KEEP_ALL if keep is None else keep,
                         "kept_image_tokens": n_image if keep is None else min(keep, n_image), "loss": loss})
    if not rows:
        raise ValueError(f"dataset {dataset.name} has no records with captions")
    return rows


def vqa(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec], answer_prefix: str = "",
        means: dict | None = None) -> list[dict[str, Any]]:
    """Records with a question (`text`) and an `answer`: the prompt ends with `answer_prefix` (e.g. "It is a"),
    and the model's choice is the answer, among all the dataset's answers, whose first token has the highest
    logit; `p_correct` is the probability (softmax over the vocabulary) of the expected answer's first token."""
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
        norms = norms_if_needed(loaded, prepared, list(conditions.values()))
        answer = str(record.annotation[ann.ANSWER])
        for name, spec in conditions.items():
            result = forward(loaded, prepared, spec, sample_of(prepared, record.sample_id, None, norms), means)
            logits = result.logits[-1]
            chosen = choices[int(torch.argmax(logits[ids]))]
            p_correct = float(torch.softmax(logits.double(), -1)[ids[choices.index(answer)]])
            rows.append({**condition_fields(name, spec, result.plan), SAMPLE_ID: record.sample_id,
                         ann.ANSWER: answer, "chosen": chosen, "correct": chosen == answer, "p_correct": p_correct})
    return rows


def generate(loaded: LoadedModel, prepared: Prepared, spec: InterventionSpec, max_new_tokens: int,
             means: dict | None = None, sample: token_sets.Sample | None = None) -> list[int]:
    """Greedy continuation (token ids) with `spec` applied at every step, stopping at the end-of-sequence token;
    `sample` (its id, label and norms) resolves the spec's sets."""
    tokenizer = loaded.processor.tokenizer
    generated: list[int] = []
    current = prepared
    for _ in range(max_new_tokens):
        step = sample_of(current, sample.sample_id, sample.label, sample.norms) if sample else None
        token = int(torch.argmax(forward(loaded, current, spec, step, means).logits[-1]))
        if token == tokenizer.eos_token_id:
            break
        generated.append(token)
        current = current.with_token(token)
    return generated


def named_labels(text: str, vocabulary: list[str]) -> set[str]:
    """The labels of `vocabulary` that `text` names as a whole word (case-insensitive, plural s allowed)."""
    return {label for label in vocabulary if re.search(rf"\b{re.escape(label)}s?\b", text, re.IGNORECASE)}


def describe(loaded: LoadedModel, dataset: Dataset, conditions: dict[str, InterventionSpec],
             instruction: str = DESCRIBE, max_new_tokens: int = 24, means: dict | None = None) -> list[dict[str, Any]]:
    """One row per (image with objects, condition): the generated description, the image's object labels it
    names (`named`, ';'-joined) and how many, and how many labels of objects absent from the image it names."""
    vocabulary = label_vocabulary(dataset)
    rows = []
    for record in dataset.records:
        present = object_labels(record)
        if not present:
            continue
        images = [load_image(path) for path in record.image_paths]
        prepared = prepare_sample(loaded, build_prompt(loaded.processor, CHAT, instruction, 1), images, record.annotation)
        sample = sample_of(prepared, record.sample_id, None, norms_if_needed(loaded, prepared, list(conditions.values())))
        for name, spec in conditions.items():
            text = loaded.processor.tokenizer.decode(generate(loaded, prepared, spec, max_new_tokens, means, sample))
            named = named_labels(text, vocabulary)
            rows.append({**condition_fields(name, spec), SAMPLE_ID: record.sample_id, "description": text,
                         "objects": len(present), "named": ";".join(sorted(named & set(present))),
                         "objects_named": len(named & set(present)), "absent_named": len(named - set(present))})
    if not rows:
        raise ValueError(f"dataset {dataset.name} has no single-image records with objects to describe")
    return rows
