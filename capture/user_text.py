"""Which tokens of a prompt are the user's own text (the `{text}` of a template, a prompt-set instruction, a
record's question), as opposed to the chat template, a prefix or the image placeholders: the token table's
`user_text` field, so that analyses can compare image tokens with what the user wrote (Wei ch. 4.1).

The span is found in characters, then mapped to tokens by the tokenizer's offsets: the prompt is built once more
with a sentinel in place of the text (so the text is located by where the template puts it, not by searching for
a string that may also occur in the template), and the tokenizer's tokens of the prompt are aligned with the
processor's input ids, which differ only by the image placeholders being repeated.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capture.errors import CaptureError
from capture.prompts import build_prompt

SENTINEL = "\ue000"  # a private-use character no template produces


def user_text_span(processor: Any, prompt: str, template: str, text: str, n_images: int, prefix: str | None,
                   placeholder: str | None) -> tuple[int, int] | None:
    """(start, end) characters of the user's `text` in `prompt` (as `build_prompt` made it with these arguments);
    None for an empty text. A template that trims the text is allowed for: the stripped text is located."""
    stripped = text.strip()
    if not stripped:
        return None
    probe = build_prompt(processor, template, SENTINEL, n_images, prefix, placeholder)
    slot = probe.find(SENTINEL)
    start = prompt.find(stripped, max(slot, 0))
    if slot < 0 or start < 0 or prompt[slot:start].strip():
        raise CaptureError("cannot locate the user text in the prompt this template builds")
    return start, start + len(stripped)


def user_text_tokens(tokenizer: Any, prompt: str, span: tuple[int, int], input_ids: np.ndarray,
                     image_token_id: int) -> np.ndarray:
    """(seq,) bool: the processor's `input_ids` whose characters overlap `span` of `prompt`."""
    encoding = tokenizer(prompt, return_offsets_mapping=True)
    ids = np.asarray(encoding["input_ids"])
    offsets = np.asarray(encoding["offset_mapping"]).reshape(-1, 2)
    inside = (offsets[:, 1] > span[0]) & (offsets[:, 0] < span[1]) & (offsets[:, 1] > offsets[:, 0])
    text, full_text = ids != image_token_id, input_ids != image_token_id
    if not np.array_equal(ids[text], input_ids[full_text]):
        raise CaptureError("the processor's text tokens differ from the tokenizer's: cannot mark the user text")
    mask = np.zeros(len(input_ids), bool)
    mask[np.flatnonzero(full_text)] = inside[text]
    return mask
