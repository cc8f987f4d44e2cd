"""Model names a user can pass: aliases of real checkpoints, tiny seeded test models, hub ids, local dirs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from capture.errors import CaptureError


@dataclass(frozen=True)
class ModelAlias:
    hub_id: str
    family: str


ALIASES: dict[str, ModelAlias] = {
    "llava-ov-0.5b": ModelAlias("llava-hf/llava-onevision-qwen2-0.5b-ov-hf", "llava_onevision"),
    "llava-ov-7b": ModelAlias("llava-hf/llava-onevision-qwen2-7b-ov-hf", "llava_onevision"),
    "llava-ov-72b": ModelAlias("llava-hf/llava-onevision-qwen2-72b-ov-hf", "llava_onevision"),
    "qwen2.5-vl-7b": ModelAlias("Qwen/Qwen2.5-VL-7B-Instruct", "qwen2_5_vl"),
    "llava-1.5-7b": ModelAlias("llava-hf/llava-1.5-7b-hf", "llava"),
    "llama3-llava-next-8b": ModelAlias("llava-hf/llama3-llava-next-8b-hf", "llava_next"),
}

# Tiny seeded random-weight models of the real architectures, built locally on first use.
TINY_MODELS: dict[str, str] = {
    "tiny-llava-ov": "llava_onevision",
    "tiny-qwen2.5-vl": "qwen2_5_vl",
    "tiny-llava-1.5": "llava",
    "tiny-llava-next": "llava_next",
}

# Tiny models trained here in minutes on synthetic scenes (`toy`), built locally on first use.
TOY_MODELS: dict[str, str] = {
    "toy-llava-ov": "llava_onevision",
}

# Models assembled here from real pretrained parts found in registry wheels (`capture.real_parts`), built on first use.
REAL_PARTS_MODELS: dict[str, str] = {
    "dino-smollm2-llava": "llava",
}

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """What `--model` names, before anything is loaded."""

    name: str  # as the user wrote it
    kind: str  # "tiny" | "toy" | "real-parts" | "hub" | "local"
    hub_id: str | None = None
    local_dir: Path | None = None
    tiny_family: str | None = None


def parse_model_name(name: str) -> ModelRef:
    """Classify `--model`: a tiny model, an alias, an existing local directory or a hub id."""
    if name in TINY_MODELS:
        return ModelRef(name, "tiny", tiny_family=TINY_MODELS[name])
    if name in TOY_MODELS:
        return ModelRef(name, "toy", tiny_family=TOY_MODELS[name])
    if name in REAL_PARTS_MODELS:
        return ModelRef(name, "real-parts", tiny_family=REAL_PARTS_MODELS[name])
    if name in ALIASES:
        return ModelRef(name, "hub", hub_id=ALIASES[name].hub_id)
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise CaptureError(f"model directory {path} has no config.json; is it a transformers checkpoint?")
        return ModelRef(name, "local", local_dir=path.resolve())
    if HUB_ID.match(name) and not path.exists() and not name.startswith((".", "/")):
        return ModelRef(name, "hub", hub_id=name)
    known = ", ".join(sorted([*ALIASES, *TINY_MODELS, *TOY_MODELS, *REAL_PARTS_MODELS]))
    raise CaptureError(f"unknown model {name!r}: not an alias ({known}), a local directory or a hub id (org/name)")
