"""Prompt text for one sample.

Formats (`--template`):
- "chat": the model's chat template, one user turn, generation prompt added (the default);
- "bbox": the box prompt of Jung et al., `<image> bbox:[x1,y1,x2,y2] label\\n`, coordinates normalised
  by the image size and rounded to 2 decimals; with `visual_prefix` it stops right before the label;
- any other string: a raw template with an `{image}` slot (one image placeholder per image) and a
  `{text}` slot.

A prefix (Liu et al. §4.1) is text placed immediately before the image; it may name record fields,
e.g. "{caption}" or "{label}". Prompt sets (Wei ch. 4.1) give each sample its user text: "normal"
caption instructions, "noisy" random vocabulary tokens, or "empty".
"""

from __future__ import annotations

from typing import Any

import numpy as np

from capture.errors import CaptureError

CHAT = "chat"
BBOX = "bbox"
DEFAULT_PROMPT = "Describe the image."
POLL_QUESTION = "Is there a {object} in the image? Answer yes or no."  # POPE's wording
PROMPT_SETS = ("normal", "noisy", "empty")
# Caption instructions, as statements and as questions (sample i uses entry i mod 5).
NORMAL_PROMPTS = (
    "Describe this image briefly.",
    "Write a short caption for the picture.",
    "What does this image show?",
    "Summarise the scene in one sentence.",
    "Which objects can you see in this image?",
)
NOISY_TOKENS = 12  # vocabulary tokens per noisy prompt
NOISY_SEED = 0


def build_prompt(processor: Any, template: str, text: str, n_images: int, prefix: str | None = None,
                 placeholder: str | None = None) -> str:
    """The exact string handed to the processor for a chat or raw `template`.

    `placeholder` is what stands for one image in a raw template (default: the processor's image token).
    """
    image_token = placeholder or processor.image_token
    if template == CHAT:
        if processor.chat_template is None:
            raise CaptureError("this model has no chat template; pass a raw --template with {image} and {text}")
        content: list[dict[str, str]] = [{"type": "text", "text": prefix}] if prefix else []
        content += [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        if prefix and n_images and prompt.find(prefix) > prompt.find(processor.image_token):
            raise CaptureError(
                "this model's chat template moves images before all text, so --prefix cannot precede the "
                "image; use a raw --template such as '{image}{text}' instead"
            )
        return prompt
    if template == BBOX:
        raise CaptureError("the bbox template is built per annotation: use bbox_prompt")
    if "{image}" not in template and n_images:
        raise CaptureError("a raw --template needs an {image} slot")
    if "{text}" not in template:
        raise CaptureError("a raw --template needs a {text} slot")
    return template.replace("{image}", (prefix or "") + image_token * n_images).replace("{text}", text)


def bbox_text(box: list[float], width: int, height: int, label: str) -> tuple[str, str]:
    """(before_label, label_and_eos) of Jung et al.'s prompt for a pixel box x1, y1, x2, y2."""
    x1, y1, x2, y2 = box
    coords = [x1 / width, y1 / height, x2 / width, y2 / height]
    coords = [min(max(round(c, 2), 0.0), 1.0) for c in coords]
    return f" bbox:[{','.join(f'{c:.2f}' for c in coords)}]", f" {label}\n"


def bbox_prompt(tokenizer: Any, placeholder: str, box: list[float], width: int, height: int, label: str,
                prefix: str | None = None, visual_prefix: bool = False) -> tuple[str, int | None]:
    """`<image> bbox:[x1,y1,x2,y2] label\\n`, and None; with `visual_prefix`, the prompt cut right before the
    label's first token, and that token's id (the token the model should predict next).

    The cut is made where the tokenizer puts the first token overlapping the label, so a tokenizer that
    merges the space into the label (" cat") ends the prefix at "]" and the next token is the label.
    """
    before, after = bbox_text(box, width, height, label)
    full = (prefix or "") + placeholder + before + after
    if not visual_prefix:
        return full, None
    label_start = len(full) - len(after) + 1  # first character of the label itself
    encoding = tokenizer(full, return_offsets_mapping=True, add_special_tokens=False)
    first = next(k for k, (start, end) in enumerate(encoding["offset_mapping"]) if end > label_start)
    return full[: encoding["offset_mapping"][first][0]], int(encoding["input_ids"][first])


def prompt_set_text(prompt_set: str, index: int, tokenizer: Any) -> str:
    """The user text of sample `index` under one of Wei's prompt types."""
    if prompt_set == "normal":
        return NORMAL_PROMPTS[index % len(NORMAL_PROMPTS)]
    if prompt_set == "empty":
        return ""
    if prompt_set == "noisy":
        return noisy_text(tokenizer, np.random.default_rng([NOISY_SEED, index]))
    raise CaptureError(f"unknown --prompt-set {prompt_set!r} (choose from {', '.join(PROMPT_SETS)})")


def noisy_text(tokenizer: Any, rng: np.random.Generator, n_tokens: int = NOISY_TOKENS) -> str:
    """`n_tokens` tokens drawn uniformly from the regular (non-special) vocabulary, decoded to text."""
    special = set(tokenizer.all_special_ids) | {i for i, t in tokenizer.added_tokens_decoder.items() if t.special}
    pieces: list[str] = []
    for _ in range(1000 * n_tokens):
        if len(pieces) == n_tokens:
            break
        token = int(rng.integers(len(tokenizer)))
        if token in special:
            continue
        piece = tokenizer.decode([token])
        if piece.strip() and "\ufffd" not in piece:  # skip whitespace and partial UTF-8 byte tokens
            pieces.append(piece)
    else:
        raise CaptureError("could not draw noisy prompt tokens: the vocabulary has almost no printable tokens")
    return "".join(pieces).strip()


def fill_fields(text: str, fields: dict[str, Any], what: str) -> str:
    """`text` with `{name}` replaced by record fields (caption, label, categories, ...)."""
    try:
        return text.format_map(fields)
    except KeyError as error:
        raise CaptureError(f"{what} {text!r} names {{{error.args[0]}}}, which this record does not have "
                           f"(it has: {', '.join(sorted(fields))})") from None
    except (ValueError, IndexError) as error:
        raise CaptureError(f"{what} {text!r} is not a valid field template: {error}") from None
