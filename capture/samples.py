"""Preparing a sample, once for every user: a prompt and its images become processor inputs and the token table
(`prepare_sample`, used by capture, interventions and sizing); for a capture, a dataset record becomes its prompt
and the positions to store (`prepare_record`), or the reason it is skipped."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from capture.datasets import Dataset, ImageLoadError, Record, load_image, record_fields
from capture.errors import CaptureError
from capture.intervention import Intervention
from capture.loading import ModelFrontEnd
from capture.options import CaptureOptions
from capture.prompts import BBOX, bbox_prompt, build_prompt, fill_fields, prompt_set_text
from capture.selection import select_positions
from capture.user_text import user_text_span, user_text_tokens
from store import annotation as ann
from store import schema
from store.schema import TokenKind
from store.token_table import TokenTable


@dataclass
class Prepared:
    """One model input: the prompt, its processor tensors and token table, the sample's annotation, and the
    original (height, width) of each image in prompt order."""

    prompt: str
    inputs: dict[str, torch.Tensor]
    table: TokenTable
    annotation: dict[str, Any]
    image_sizes: list[tuple[int, int]]

    def signature(self) -> tuple:
        """Inputs with equal signatures can share one forward pass without padding."""
        return tuple((k, tuple(v.shape), v.dtype, v.tolist() if k == "image_sizes" else None)
                     for k, v in sorted(self.inputs.items()))

    def with_token(self, token: int) -> Prepared:
        """This input with one more text token at the end (input ids, masks and token table)."""
        length = self.inputs["input_ids"].shape[1]
        inputs = {}
        for key, value in self.inputs.items():
            if value.dim() == 2 and value.shape == (1, length):  # per-token inputs: ids, attention mask, type ids
                fill = token if key == "input_ids" else (1 if key == "attention_mask" else 0)
                value = torch.cat([value, torch.full((1, 1), fill, dtype=value.dtype)], dim=1)
            inputs[key] = value
        row = TokenTable.empty(1)
        row.fields[schema.KIND][:] = TokenKind.TEXT
        row.fields[schema.TOKEN_ID][:] = token
        row.fields[schema.POSITION][:] = length
        return replace(self, inputs=inputs, table=self.table.concat(row))


def prepare_sample(model: ModelFrontEnd, prompt: str, images: list[Any], annotation: dict[str, Any] | None = None,
                   user_text: tuple[int, int] | None = None) -> Prepared:
    """Processor inputs and token table of `prompt` with `images` (PIL images, in prompt order); `user_text`, the
    character span of the user's text in `prompt`, marks its tokens in the table."""
    inputs = model.adapter.processor_inputs(model.processor, prompt, images)
    sizes = [(image.height, image.width) for image in images]
    table = model.adapter.token_table(model.processor, model.config, inputs, sizes)
    if user_text is not None:
        table.fields[schema.USER_TEXT][:] = user_text_tokens(model.processor.tokenizer, prompt, user_text,
                                                             inputs["input_ids"][0].cpu().numpy(),
                                                             model.adapter.image_token_id(model.config))
    return Prepared(prompt, inputs, table, annotation or {}, sizes)


@dataclass
class CaptureItem:
    """One record of a capture: its prepared input and what to store of it, or the reason it is skipped."""

    index: int
    annotation: dict[str, Any] = field(default_factory=dict)
    prepared: Prepared | None = None
    positions: np.ndarray | None = None  # selected sequence positions
    dense_rows: np.ndarray | None = None  # rows of `positions` whose dense FFN coefficients are kept
    plan: Any = None  # the intervention resolved for this sample
    skip_reason: str = ""


def prepare_record(model: ModelFrontEnd, dataset: Dataset, index: int, options: CaptureOptions,
                   token_sets: tuple[str, ...], dense_sets: tuple[str, ...] | None,
                   intervention: Intervention | None = None) -> CaptureItem:
    """Record `index` of `dataset` ready for the forward pass; a missing or corrupt image skips it."""
    record = dataset.records[index]
    try:
        images = [load_image(path) for path in record.image_paths]
    except ImageLoadError as error:
        return CaptureItem(index, record.annotation, skip_reason=str(error))
    if options.template == BBOX and len(images) != 1:
        return CaptureItem(index, record.annotation, skip_reason=f"bbox prompts need one image, record has {len(images)}")
    prompt, annotation, user_text = record_prompt(model, options, record, index,
                                                  [(im.width, im.height) for im in images])
    prepared = prepare_sample(model, prompt, images, annotation, user_text)
    plan = None
    if intervention is not None:  # the model then sees the (possibly truncated) sequence of the returned table
        plan, table = intervention.plan(prepared.table, record.annotation, prepared.image_sizes, record.sample_id)
        prepared = replace(prepared, table=table)
    kind = prepared.table.fields[schema.KIND]
    positions = select_positions(kind, token_sets)
    dense_rows = None
    if dense_sets is not None:
        dense_rows = np.flatnonzero(np.isin(positions, select_positions(kind, dense_sets)))
    return CaptureItem(index, annotation, prepared, positions, dense_rows, plan)


def record_prompt(model: ModelFrontEnd, options: CaptureOptions, record: Record, index: int,
                  image_sizes_wh: list[tuple[int, int]]) -> tuple[str, dict[str, Any], tuple[int, int] | None]:
    """The prompt of sample `index`, its annotation (plus `next_token_id` for a visual prefix) and the character
    span of the user's text in the prompt (None for bbox prompts and empty texts)."""
    annotation = dict(record.annotation)
    fields = record_fields(record)
    prefix = fill_fields(options.prefix, fields, "--prefix") if options.prefix else None
    placeholder = model.adapter.image_placeholder(model.processor)
    tokenizer = model.processor.tokenizer
    if options.template == BBOX:
        obj = record.annotation[ann.OBJECT]
        (width, height), = image_sizes_wh
        prompt, next_token = bbox_prompt(tokenizer, placeholder, obj[ann.BOX], width, height, obj[ann.LABEL], prefix,
                                         options.visual_prefix)
        if next_token is not None:
            annotation[ann.NEXT_TOKEN_ID] = next_token
        return prompt, annotation, None
    if options.prompt_set:
        text = prompt_set_text(options.prompt_set, index, tokenizer)
    elif record.text is not None:
        text = record.text
    else:
        text = fill_fields(options.prompt, fields, "--prompt")
    n_images = len(image_sizes_wh)
    prompt = build_prompt(model.processor, options.template, text, n_images, prefix, placeholder)
    return prompt, annotation, user_text_span(model.processor, prompt, options.template, text, n_images, prefix,
                                              placeholder)


def check_record_fields(options: CaptureOptions, dataset: Dataset) -> None:
    """Every record has the fields that --prefix / --prompt name (checked before any store is written)."""
    for record in dataset.records:
        fields = record_fields(record)
        try:
            if options.prefix:
                fill_fields(options.prefix, fields, "--prefix")
            if record.text is None and not options.prompt_set and options.template != BBOX:
                fill_fields(options.prompt, fields, "--prompt")
        except CaptureError as error:
            raise CaptureError(f"sample {record.sample_id}: {error}") from None


def preflight_prompts(model: ModelFrontEnd, options: CaptureOptions, dataset: Dataset) -> None:
    """Build the prompt of the first sample of each image count, so template problems (a prefix the chat template
    cannot place, a missing slot) stop the run before the store is created."""
    seen: set[int] = set()
    for index, record in enumerate(dataset.records):
        n_images = len(record.image_paths)
        if n_images in seen or (options.template == BBOX and n_images != 1):
            continue
        seen.add(n_images)
        record_prompt(model, options, record, index, [(64, 64)] * n_images)
