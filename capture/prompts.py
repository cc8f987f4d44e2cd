"""Prompt text for one sample: the model's chat template (default) or a raw template with slots."""

from __future__ import annotations

from typing import Any

from capture.errors import CaptureError

CHAT = "chat"
DEFAULT_PROMPT = "Describe the image."


def build_prompt(processor: Any, template: str, text: str, n_images: int, prefix: str | None = None) -> str:
    """The exact string handed to the processor.

    `template` is "chat" (the processor's chat template, one user turn, generation prompt added) or a
    raw string with an `{image}` slot (replaced by one image placeholder per image) and a `{text}`
    slot. `prefix` is text placed immediately before the image (Liu et al. §4.1).
    """
    image_token = processor.image_token
    if template == CHAT:
        if processor.chat_template is None:
            raise CaptureError("this model has no chat template; pass a raw --template with {image} and {text}")
        content: list[dict[str, str]] = [{"type": "text", "text": prefix}] if prefix else []
        content += [{"type": "image"}] * n_images + [{"type": "text", "text": text}]
        prompt = processor.apply_chat_template(
            [{"role": "user", "content": content}], add_generation_prompt=True, tokenize=False
        )
        if prefix and n_images and prompt.find(prefix) > prompt.find(image_token):
            raise CaptureError(
                "this model's chat template moves images before all text, so --prefix cannot precede the "
                "image; use a raw --template such as '{image}{text}' instead"
            )
        return prompt
    if "{image}" not in template and n_images:
        raise CaptureError("a raw --template needs an {image} slot")
    if "{text}" not in template:
        raise CaptureError("a raw --template needs a {text} slot")
    return template.replace("{image}", (prefix or "") + image_token * n_images).replace("{text}", text)
