"""The intervention spec: a small JSON file naming what to change in a forward pass.

    {
      "name": "late input-agnostic keys",
      "knockout": [                                   # attention entries removed (query can't see key)
        {"queries": "text", "keys": "image:base",
         "units": [[20, 0], [21, 1]],                 # (layer, kv_head) pairs; or "layers" (a list or "all",
                                                      #   + optional "kv_heads")
         "units_from": {"file": "keys.json", "group": "late"},   # or units read from a variance key list
         "control_layers": [18, 19, 20, 21]}          # where controls draw their units (default: the units' layers)
      ],
      "ablate": [                                     # input embeddings replaced by a mean vector
        {"tokens": "object+1", "mean_from": "store.zarr", "mean_over": "image"}
      ],
      "keep_image_tokens": 64,                        # truncation: only the first 64 image tokens enter the model
      "object_region": "auto",                        # object tokens from the mask (auto: where the data has one,
                                                      #   else the box), or always "mask" / "box"
      "seed": 0,                                      # random token sets (with the sample id and the draw)
      "provenance": {...}                             # free-form: where the spec came from (recorded, not read)
    }

Token sets (resolved per sample from its token table and annotation): `image` (every image token, newlines
included), `text` (every non-image token), `prompt_text` (text before the first image), `question` (text after the
last image), `last` (the final position), `all`, `image[a:b]` (image tokens a..b-1, in sequence order),
`image:base`, `image:grid`, `image:patches` (image 0's patch tokens, newlines excluded, of the base view, the grid,
or both: what `analyses variance --part base|grid|all` measures), `object`, `object+N` (image-0 tokens whose
footprint covers a pixel of the object's region, grown by N grid cells: Neo et al.'s buffer), `non-object` (image
tokens outside `object+1`), `last-row` (the last row of image 0's visual tokens), `non-last-row` (image 0's other
visual tokens), `register` (image tokens whose input-embedding norm exceeds the sample's mean + 2 std), and
`random:SET` (as many image tokens as SET holds, drawn at random from the image tokens outside it, seeded by the
spec's seed, the draw and the sample id: the control for an ablation of SET).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from analyses.variance import ALL_FLAGGED, FLAGGED_BY_GROUP, LAYER_GROUPS
from interventions.regions import AUTO, REGIONS
from interventions.token_sets import RANDOM, REGISTER
from store.schema import KEYS, KV_HEAD, LAYER, TokenSet

# Fields of a spec file (the JSON form above); a knockout's `keys` names the attention keys a query may not see,
# the keys the store's `keys` array holds
NAME, KNOCKOUT, ABLATE, KEEP_IMAGE_TOKENS = "name", "knockout", "ablate", "keep_image_tokens"
OBJECT_REGION, SEED, PROVENANCE = "object_region", "seed", "provenance"
DRAW, GROUP_OF, CONTROL_OF = "draw", "group_of", "control_of"  # set on the draws of a control, recorded
QUERIES, UNITS, UNITS_FROM, LAYERS, KV_HEADS = "queries", "units", "units_from", "layers", "kv_heads"
CONTROL_LAYERS = "control_layers"
FILE, GROUP = "file", "group"  # of units_from
TOKENS, MEAN_FROM, MEAN_OVER = "tokens", "mean_from", "mean_over"
NONE = "none"  # the name of the empty spec: the model as it is
EVERY_LAYER = -1  # a unit's layer standing for every layer of the model (`"layers": "all"`), until `bind_layers`
ALL_LAYERS = "all"  # the value of "layers" that blocks every layer
FIELDS = {NAME, KNOCKOUT, ABLATE, KEEP_IMAGE_TOKENS, OBJECT_REGION, SEED, PROVENANCE, DRAW, GROUP_OF, CONTROL_OF}
TOKEN_SET = re.compile(r"^(random:)*(image|text|prompt_text|question|last|all|non-object|object(\+\d+)?|"
                       r"image\[\d*:\d*\]|image:(base|grid|patches)|last-row|non-last-row|register)$")
SET_NAMES = ("image, text, prompt_text, question, last, all, image[a:b], image:base|grid|patches, object, object+N, "
             "non-object, last-row, non-last-row, register, random:SET")


class SpecError(ValueError):
    """A spec file that cannot be used (one clear line)."""


@dataclass(frozen=True)
class Knockout:
    """Block `queries` from attending to `keys` at the given (layer, kv_head) units (kv_head None: every head)."""

    queries: str
    keys: str
    units: tuple[tuple[int, int | None], ...]
    control_layers: tuple[int, ...] = ()  # the layer group controls draw from; empty: the units' own layers

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
    """An intervention; `draw`, `group_of` and `control_of` mark one seeded draw of a randomised condition (the
    name it is reported under, and the condition it is the control of)."""

    name: str = NONE
    knockout: tuple[Knockout, ...] = ()
    ablate: tuple[Ablation, ...] = ()
    keep_image_tokens: int | None = None
    object_region: str = AUTO
    seed: int = 0
    provenance: dict[str, Any] = field(default_factory=dict, compare=False)
    draw: int = 0
    group_of: str | None = None
    control_of: str | None = None
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def empty(self) -> bool:
        return not (self.knockout or self.ablate or self.keep_image_tokens is not None)

    def token_sets(self) -> set[str]:
        """Every token set the spec names."""
        return {name for k in self.knockout for name in (k.queries, k.keys)} | {a.tokens for a in self.ablate}

    @property
    def randomised(self) -> bool:
        """Does a token set draw at random (so that the spec is a control to draw several times)?"""
        return any(name.startswith(RANDOM) for name in self.token_sets())

    @property
    def needs_norms(self) -> bool:
        """Does a token set need the input-embedding norms (`register`)?"""
        return any(re.sub(f"^({RANDOM})*", "", name) == REGISTER for name in self.token_sets())

    def as_dict(self) -> dict[str, Any]:
        """The spec as stored with results and in a store's attributes (paths as strings)."""
        return {
            NAME: self.name,
            KNOCKOUT: [knockout_entry(k.queries, k.keys, k.units, k.control_layers) for k in self.knockout],
            ABLATE: [{TOKENS: a.tokens, MEAN_FROM: str(a.mean_from), MEAN_OVER: a.mean_over} for a in self.ablate],
            KEEP_IMAGE_TOKENS: self.keep_image_tokens,
            OBJECT_REGION: self.object_region,
            SEED: self.seed,
            PROVENANCE: self.provenance,
            DRAW: self.draw,
            GROUP_OF: self.group_of,
            CONTROL_OF: self.control_of,
        }


def knockout_entry(queries: str, keys: str, units: tuple[tuple[int, int | None], ...] | list,
                   control_layers: tuple[int, ...] | list = ()) -> dict[str, Any]:
    """One knockout of a spec in its JSON form."""
    entry: dict[str, Any] = {QUERIES: queries, KEYS: keys, UNITS: [list(u) for u in units]}
    if control_layers:
        entry[CONTROL_LAYERS] = [int(layer) for layer in control_layers]
    return entry


def bind_layers(spec: InterventionSpec, n_layers: int) -> InterventionSpec:
    """`spec` for a model of `n_layers` decoder layers: `"layers": "all"` made explicit, every layer checked."""
    knockouts = []
    for knockout in spec.knockout:
        units = [(layer, head) for unit_layer, head in knockout.units
                 for layer in (range(n_layers) if unit_layer == EVERY_LAYER else [unit_layer])]
        beyond = sorted({layer for layer, _ in units if not 0 <= layer < n_layers} |
                        {layer for layer in knockout.control_layers if not 0 <= layer < n_layers})
        if beyond:
            raise SpecError(f"spec {spec.name!r}: layer(s) {beyond} outside the model's {n_layers} layers")
        knockouts.append(replace(knockout, units=tuple(dict.fromkeys(units))))
    return replace(spec, knockout=tuple(knockouts))


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
    unknown = set(data) - FIELDS
    if unknown:
        raise SpecError(f"unknown spec field(s): {', '.join(sorted(unknown))}")
    knockouts = tuple(_knockout(entry, base, i) for i, entry in enumerate(data.get(KNOCKOUT, [])))
    ablations = tuple(_ablation(entry, base, i) for i, entry in enumerate(data.get(ABLATE, [])))
    keep = data.get(KEEP_IMAGE_TOKENS)
    if keep is not None and (not isinstance(keep, int) or keep < 0):
        raise SpecError("keep_image_tokens must be a non-negative integer")
    region = data.get(OBJECT_REGION, AUTO)
    if region not in REGIONS:
        raise SpecError(f"object_region {region!r}: choose from {', '.join(REGIONS)}")
    seed, draw = data.get(SEED, 0), data.get(DRAW, 0)
    if not isinstance(seed, int) or not isinstance(draw, int):
        raise SpecError("seed and draw must be integers")
    return InterventionSpec(str(data.get(NAME, "unnamed")), knockouts, ablations, keep, region, seed,
                            dict(data.get(PROVENANCE) or {}), draw, data.get(GROUP_OF), data.get(CONTROL_OF), data)


def token_set(name: Any, where: str) -> str:
    if not isinstance(name, str) or not TOKEN_SET.match(name):
        raise SpecError(f"{where}: unknown token set {name!r} ({SET_NAMES})")
    return name


def _knockout(entry: Any, base: Path, index: int) -> Knockout:
    where = f"knockout[{index}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{where} must be an object")
    units: list[tuple[int, int | None]] = []
    control_layers = [int(layer) for layer in entry.get(CONTROL_LAYERS, ())]
    if UNITS in entry:  # a null head: every head of the layer
        units += [(int(layer), None if head is None else int(head)) for layer, head in entry[UNITS]]
    if UNITS_FROM in entry:
        key_list, group = base / entry[UNITS_FROM][FILE], entry[UNITS_FROM].get(GROUP)
        units += units_from_key_list(key_list, group)
        control_layers = control_layers or group_layers(key_list, group)
    if LAYERS in entry:
        layers = [EVERY_LAYER] if entry[LAYERS] == ALL_LAYERS else entry[LAYERS]
        if not isinstance(layers, list):
            raise SpecError(f'{where}: layers must be a list of layers or "all"')
        heads = entry.get(KV_HEADS)
        units += [(int(layer), int(h)) for layer in layers for h in heads] if heads else \
                 [(int(layer), None) for layer in layers]
    if not units:
        raise SpecError(f"{where} names no units: give layers, units or units_from")
    return Knockout(token_set(entry.get(QUERIES, TokenSet.TEXT.value), where),
                    token_set(entry.get(KEYS, TokenSet.IMAGE.value), where), tuple(dict.fromkeys(units)),
                    tuple(control_layers))


def _ablation(entry: Any, base: Path, index: int) -> Ablation:
    where = f"ablate[{index}]"
    if not isinstance(entry, dict) or MEAN_FROM not in entry:
        raise SpecError(f"{where} needs tokens and mean_from (a store)")
    return Ablation(token_set(entry.get(TOKENS, "object"), where), base / entry[MEAN_FROM],
                    token_set(entry.get(MEAN_OVER, TokenSet.IMAGE.value), where))


def read_key_list(path: Path) -> dict[str, Any]:
    """A key list written by the variance analysis (`input_agnostic_keys.json`)."""
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise SpecError(f"key list {path} not found (written by `python -m analyses variance`)") from None
    except json.JSONDecodeError as error:
        raise SpecError(f"key list {path} is not valid JSON (line {error.lineno}: {error.msg})") from None


def group_layers(path: Path, group: str | None = None) -> list[int]:
    """Every layer of a key list's layer group (all groups when None), flagged or not: where controls draw from
    (none from a key list that does not record its groups: controls then use the knockout's own layers)."""
    groups = read_key_list(path).get(LAYER_GROUPS, {})
    if group is not None and groups and group not in groups:
        raise SpecError(f"key list {path} has no group {group!r} (has {', '.join(groups)})")
    return sorted(int(layer) for name, layers in groups.items() if group in (None, name) for layer in layers)


def units_from_key_list(path: Path, group: str | None = None) -> list[tuple[int, int]]:
    """(layer, kv_head) pairs from a key list written by the variance analysis (`input_agnostic_keys.json`): one
    layer group ("early", "middle", "late") or all of them."""
    keys = read_key_list(path)
    if group is None:
        return [(int(layer), int(head)) for layer, head in keys[ALL_FLAGGED]]
    groups = keys.get(FLAGGED_BY_GROUP, {})
    if group not in groups:
        raise SpecError(f"key list {path} has no group {group!r} (has {', '.join(groups)})")
    return [(int(k[LAYER]), int(k[KV_HEAD])) for k in groups[group]]
