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

Token sets (resolved per sample from its token table and annotation): `image`, `text` (every non-image token),
`prompt_text` (text before the first image), `question` (text after the last image), `last` (the final position),
`all`, `image[a:b]` (image tokens a..b-1, in sequence order), `object`, `object+N` (image tokens whose box overlaps
an object box, grown by N tokens on the grid), `non-object` (image tokens not in `object+1`), and `random:SET` (as
many image tokens as SET holds, drawn at random from the image tokens outside it: the control for an ablation of SET).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from analyses.variance import ALL_FLAGGED, FLAGGED_BY_GROUP
from store.schema import KEYS, KV_HEAD, LAYER, TokenSet

# Fields of a spec file (the JSON form above); a knockout's `keys` names the attention keys a query may not see,
# the keys the store's `keys` array holds
NAME, KNOCKOUT, ABLATE, KEEP_IMAGE_TOKENS = "name", "knockout", "ablate", "keep_image_tokens"
QUERIES, UNITS, UNITS_FROM, LAYERS, KV_HEADS = "queries", "units", "units_from", "layers", "kv_heads"
FILE, GROUP = "file", "group"  # of units_from
TOKENS, MEAN_FROM, MEAN_OVER = "tokens", "mean_from", "mean_over"
NONE = "none"  # the name of the empty spec: the model as it is
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
    mean_over: str = TokenSet.IMAGE.value


@dataclass(frozen=True)
class InterventionSpec:
    name: str = NONE
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
            NAME: self.name,
            KNOCKOUT: [knockout_entry(k.queries, k.keys, k.units) for k in self.knockout],
            ABLATE: [{TOKENS: a.tokens, MEAN_FROM: str(a.mean_from), MEAN_OVER: a.mean_over} for a in self.ablate],
            KEEP_IMAGE_TOKENS: self.keep_image_tokens,
        }


def knockout_entry(queries: str, keys: str, units: tuple[tuple[int, int | None], ...] | list) -> dict[str, Any]:
    """One knockout of a spec in its JSON form."""
    return {QUERIES: queries, KEYS: keys, UNITS: [list(u) for u in units]}


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
    unknown = set(data) - {NAME, KNOCKOUT, ABLATE, KEEP_IMAGE_TOKENS}
    if unknown:
        raise SpecError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    knockouts = tuple(_knockout(entry, base, i) for i, entry in enumerate(data.get(KNOCKOUT, [])))
    ablations = tuple(_ablation(entry, base, i) for i, entry in enumerate(data.get(ABLATE, [])))
    keep = data.get(KEEP_IMAGE_TOKENS)
    if keep is not None and (not isinstance(keep, int) or keep < 0):
        raise SpecError("keep_image_tokens must be a non-negative integer")
    return InterventionSpec(str(data.get(NAME, "unnamed")), knockouts, ablations, keep, data)


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
    if UNITS in entry:  # a null head: every head of the layer
        units += [(int(layer), None if head is None else int(head)) for layer, head in entry[UNITS]]
    if UNITS_FROM in entry:
        units += units_from_key_list(base / entry[UNITS_FROM][FILE], entry[UNITS_FROM].get(GROUP))
    if LAYERS in entry:
        heads = entry.get(KV_HEADS)
        units += [(int(layer), int(h)) for layer in entry[LAYERS] for h in heads] if heads else \
                 [(int(layer), None) for layer in entry[LAYERS]]
    if not units:
        raise SpecError(f"{where} names no units: give layers, units or units_from")
    return Knockout(token_set(entry.get(QUERIES, TokenSet.TEXT.value), where),
                    token_set(entry.get(KEYS, TokenSet.IMAGE.value), where), tuple(dict.fromkeys(units)))


def _ablation(entry: Any, base: Path, index: int) -> Ablation:
    where = f"ablate[{index}]"
    if not isinstance(entry, dict) or MEAN_FROM not in entry:
        raise SpecError(f"{where} needs tokens and mean_from (a store)")
    return Ablation(token_set(entry.get(TOKENS, "object"), where), base / entry[MEAN_FROM],
                    token_set(entry.get(MEAN_OVER, TokenSet.IMAGE.value), where))


def units_from_key_list(path: Path, group: str | None = None) -> list[tuple[int, int]]:
    """(layer, kv_head) pairs from a key list written by the variance analysis (`input_agnostic_keys.json`): one
    layer group ("early", "middle", "late") or all of them."""
    try:
        keys = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"key list {path} not found (written by `python -m analyses variance`)") from None
    if group is None:
        return [(int(layer), int(head)) for layer, head in keys[ALL_FLAGGED]]
    groups = keys.get(FLAGGED_BY_GROUP, {})
    if group not in groups:
        raise SpecError(f"key list {path} has no group {group!r} (has {', '.join(groups)})")
    return [(int(k[LAYER]), int(k[KV_HEAD])) for k in groups[group]]
