"""Toy examples as model inputs: the prompt the tools would build, the answer as the only labelled tokens, and
right-padded batches. Shared by training and held-out evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from capture.prompts import CHAT, build_prompt
from toy.scenes import Example, caption_of

IGNORE = -100  # label of positions without loss (transformers' convention)


@dataclass
class Encoded:
    """One example as model inputs: input_ids and labels (seq,), pixel_values (tiles, 3, px, px), image size."""

    input_ids: torch.Tensor
    labels: torch.Tensor
    pixel_values: torch.Tensor | None = None
    image_size: torch.Tensor | None = None


def prompt_text(processor: Any, example: Example) -> str:
    """The prompt the tools would build for this example (chat template, or Jung et al.'s raw bbox prompt)."""
    if example.task == "bbox":
        return processor.image_token + example.question
    return build_prompt(processor, CHAT, example.question, 1)


def answer_text(processor: Any, example: Example) -> str:
    return example.answer if example.task == "bbox" else example.answer + processor.tokenizer.eos_token


def answer_labels(tokenizer: Any, input_ids: torch.Tensor, answer: str) -> torch.Tensor:
    """Labels of a sequence ending in `answer`: the answer's tokens, IGNORE elsewhere."""
    n_answer = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    labels = torch.full_like(input_ids, IGNORE)
    labels[-n_answer:] = input_ids[-n_answer:]
    return labels


def encode(processor: Any, example: Example) -> Encoded:
    """Tokenise prompt + answer with the image; labels are the answer's tokens, IGNORE elsewhere."""
    prompt, answer = prompt_text(processor, example), answer_text(processor, example)
    inputs = processor(text=[prompt + answer], images=[[example.image]], return_tensors="pt")
    input_ids = inputs["input_ids"][0]
    labels = answer_labels(processor.tokenizer, input_ids, answer)
    return Encoded(input_ids, labels, inputs["pixel_values"][0], inputs["image_sizes"][0])


def encode_described(processor: Any, example: Example) -> Encoded:
    """The example with its image replaced by the scene's caption (language-model pretraining)."""
    tokenizer = processor.tokenizer
    prompt = build_prompt(processor, CHAT, example.question, 0, prefix=caption_of(example.objects) + "\n")
    answer = answer_text(processor, example)
    input_ids = torch.tensor(tokenizer(prompt + answer, add_special_tokens=False)["input_ids"])
    return Encoded(input_ids, answer_labels(tokenizer, input_ids, answer))


def collate(items: list[Encoded], pad_id: int) -> dict[str, torch.Tensor]:
    """A right-padded batch for the model's forward (every toy image has the same number of tiles)."""
    length = max(len(item.input_ids) for item in items)
    input_ids = torch.full((len(items), length), pad_id, dtype=torch.long)
    labels = torch.full((len(items), length), IGNORE, dtype=torch.long)
    attention_mask = torch.zeros((len(items), length), dtype=torch.long)
    for row, item in enumerate(items):
        n = len(item.input_ids)
        input_ids[row, :n], labels[row, :n], attention_mask[row, :n] = item.input_ids, item.labels, 1
    batch = {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask}
    with_image = [item for item in items if item.pixel_values is not None]
    if with_image:  # the model matches image features to image tokens across the whole batch
        batch["pixel_values"] = torch.stack([item.pixel_values for item in with_image])
        batch["image_sizes"] = torch.stack([item.image_size for item in with_image])
    return batch
