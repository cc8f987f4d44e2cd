"""Held-out accuracy of the toy model on unseen scenes (teacher-forced: the answer's tokens are read off the
logits one position earlier, exactly as polling reads its Yes / No logits).

- caption word accuracy: of the colour and shape words in the reference captions, the fraction the model
  predicts as its top token (chance 25%: 4 colours, 4 shapes);
- polling accuracy: yes/no questions, half about absent shapes, answered by comparing the Yes and No logits
  (chance 50%);
- box naming accuracy: the shape named after Jung et al.'s `bbox:[...]` prompt, top token (chance 25%).
"""

from __future__ import annotations

from typing import Any

import torch

from capture.datasets.synthetic_coco import CATEGORIES, COLOURS
from toy.batches import IGNORE, collate, encode
from toy.scenes import Example

CHANCE = {"caption_word_accuracy": 25.0, "polling_accuracy": 50.0, "box_naming_accuracy": 25.0}


def answer_logits(model: torch.nn.Module, processor: Any, examples: list[Example],
                  batch_size: int = 32) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per example: (answer token ids (n,), the logits (n, vocab) that predicted them)."""
    out = []
    for start in range(0, len(examples), batch_size):
        batch = collate([encode(processor, e) for e in examples[start:start + batch_size]],
                        processor.tokenizer.pad_token_id)
        labels = batch.pop("labels")
        with torch.inference_mode():
            logits = model(**batch).logits.float()
        for row in range(len(labels)):
            where = torch.nonzero(labels[row] != IGNORE).squeeze(1)
            out.append((labels[row, where], logits[row, where - 1]))
    return out


def evaluate(model: torch.nn.Module, processor: Any, examples: list[Example]) -> dict[str, float]:
    """Accuracies in % (and the number of questions of each) over held-out `examples`."""
    tokenizer = processor.tokenizer
    content = {tokenizer.convert_tokens_to_ids(tokenizer.tokenize(f" {w}"))[0] for w in (*CATEGORIES, *COLOURS)}
    yes, no = (tokenizer(word, add_special_tokens=False)["input_ids"][0] for word in ("Yes", "No"))
    words = polls = boxes = 0
    word_hits = poll_hits = box_hits = 0
    for example, (ids, logits) in zip(examples, answer_logits(model, processor, examples), strict=True):
        predicted = logits.argmax(dim=-1)
        if example.task == "caption":
            is_content = torch.tensor([int(i) in content for i in ids])
            words += int(is_content.sum())
            word_hits += int((predicted[is_content] == ids[is_content]).sum())
        elif example.task == "poll":
            polls += 1
            poll_hits += int(bool(logits[0, yes] > logits[0, no]) == example.present)
        else:
            boxes += 1
            box_hits += int(predicted[0] == ids[0])
    return {"caption_word_accuracy": 100 * word_hits / max(words, 1), "caption_words": words,
            "polling_accuracy": 100 * poll_hits / max(polls, 1), "polling_questions": polls,
            "box_naming_accuracy": 100 * box_hits / max(boxes, 1), "box_prompts": boxes}
