"""The intervention spec: a small JSON file naming what to change in a forward pass.

    {
      "name": "late input-agnostic keys",
      "knockout": [                                   # attention entries removed (query can't see key)
        {"queries": "text", "keys": "image",
         "units": [[20, 0], [21, 1]],                 # (layer, kv_head) pairs; or "layers" (+ optional "kv_heads")
         "units_from": {"file": "keys.json", "group": "late"}}   # or units read from a variance key list
      ],
      "ablate": [                                     # input embeddings replaced by a mean vector
        {"tokens": "object+1", "mean_from": "store.zarr", "mean_over": "image"}
      ],
      "keep_image_tokens": 64                         # truncation: only the first 64 image tokens enter the model
    }

Token sets (resolved per sample from its token table and annotation): "image", "text" (every non-image token),
"prompt_text" (text before the first image), "question" (text after the last image), "last" (the final position),
"all", "image[a:b]" (image tokens a..b-1, in sequence order), "object", "object+N" (image tokens whose box overlaps
an object box, grown by N tokens on the grid), "non-object" (image tokens not in "object+1"), and "random:SET" (as
many image tokens as SET holds, drawn at random from the image tokens outside it: the control for an ablation of SET).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TOKEN_SET = re.compile(r"^(random:)?(image|text|prompt_text|question|last|all|non-object|object(\+\d+)?|image\[\d*:\d*\])$")


class SpecError(ValueError):
    """A spec file that cannot be used (one clear line)."""


@dataclass(frozen=True)
class Knockout:
    """Block `queries` from attending to `keys` at the given (layer, kv_head) units (kv_head None: every head)."""

    queries: str
    keys: str
    units: tuple[tuple[int, int | None], ...]

    def layers(self) -> set[int]:
        return {layer for layer, _ in self.units}


@dataclass(frozen=True)
class Ablation:
    """Replace the input embeddings of `tokens` by the mean of stream 0 over `mean_over` tokens of a store."""

    tokens: str
    mean_from: Path
    mean_over: str = "image"


@dataclass(frozen=True)
class InterventionSpec:
    name: str = "none"
    knockout: tuple[Knockout, ...] = ()
    ablate: tuple[Ablation, ...] = ()
    keep_image_tokens: int | None = None
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def empty(self) -> bool:
        return not (self.knockout or self.ablate or self.keep_image_tokens is not None)

    def as_dict(self) -> dict[str, Any]:
        """The spec as stored with results and in a store's attributes (paths as strings)."""
        return {
            "name": self.name,
            "knockout": [{"queries": k.queries, "keys": k.keys, "units": [list(u) for u in k.units]}
                         for k in self.knockout],
            "ablate": [{"tokens": a.tokens, "mean_from": str(a.mean_from), "mean_over": a.mean_over} for a in self.ablate],
            "keep_image_tokens": self.keep_image_tokens,
        }


def load_spec(path: Path) -> InterventionSpec:
    """Read and check a spec file; relative paths inside it are relative to the file."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"intervention spec {path} not found") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"intervention spec {path} is not valid JSON (line {error.lineno}: {error.msg})") from None
    return parse_spec(data, Path(path).parent)


def parse_spec(data: Any, base: Path = Path(".")) -> InterventionSpec:
    """An InterventionSpec from its JSON form (see the module docstring)."""
    if not isinstance(data, dict):
        raise SpecError("an intervention spec is a JSON object")
    unknown = set(data) - {"name", "knockout", "ablate", "keep_image_tokens"}
    if unknown:
        raise SpecError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    knockouts = tuple(_knockout(entry, base, i) for i, entry in enumerate(data.get("knockout", [])))
    ablations = tuple(_ablation(entry, base, i) for i, entry in enumerate(data.get("ablate", [])))
    keep = data.get("keep_image_tokens")
    if keep is not None and (not isinstance(keep, int) or keep < 0):
        raise SpecError("keep_image_tokens must be a non-negative integer")
    return InterventionSpec(str(data.get("name", "unnamed")), knockouts, ablations, keep, data)


def token_set(name: Any, where: str) -> str:
    if not isinstance(name, str) or not TOKEN_SET.match(name):
        raise SpecError(f"{where}: unknown token set {name!r} (image, text, prompt_text, question, last, all, "
                        "image[a:b], object, object+N, non-object, random:SET)")
    return name


def _knockout(entry: Any, base: Path, index: int) -> Knockout:
    where = f"knockout[{index}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be an object")
    units: list[tuple[int, int | None]] = []
    if "units" in entry:  # a null head: every head of the layer
        units += [(int(layer), None if head is None else int(head)) for layer, head in entry["units"]]
    if "units_from" in entry:
        units += units_from_key_list(base / entry["units_from"]["file"], entry["units_from"].get("group"))
    if "layers" in entry:
        heads = entry.get("kv_heads")
        units += [(int(layer), int(h)) for layer in entry["layers"] for h in heads] if heads else \
                 [(int(layer), None) for layer in entry["layers"]]
    if not units:
        raise SpecError(f"{where} names no units: give layers, units or units_from")
    return Knockout(token_set(entry.get("queries", "text"), where), token_set(entry.get("keys", "image"), where),
                    tuple(dict.fromkeys(units)))


def _ablation(entry: Any, base: Path, index: int) -> Ablation:
    where = f"ablate[{index}]"
    if not isinstance(entry, dict) or "mean_from" not in entry:
        raise SpecError(f"{where} needs tokens and mean_from (a store)")
    return Ablation(token_set(entry.get("tokens", "object"), where), base / entry["mean_from"],
                    token_set(entry.get("mean_over", "image"), where))


def units_from_key_list(path: Path, group: str | None = None) -> list[tuple[int, int]]:
    """(layer, kv_head) pairs from a key list written by the variance analysis (`input_agnostic_keys.json`): one
    layer group ("early", "middle", "late") or all of them."""
    try:
        keys = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"key list {path} not found (written by `python -m analyses variance`)") from None
    if group is None:
        return [(int(layer), int(head)) for layer, head in keys["all"]]
    if group not in keys.get("keys", {}):
        raise SpecError(f"key list {path} has no group {group!r} (has {', '.join(keys.get('keys', {}))})")
    return [(int(k["layer"]), int(k["kv_head"])) for k in keys["keys"][group]]
