"""Conditions derived from a spec: its knockout restricted to layer windows (Neo et al. §4.2), Liu et al.'s
controls (A.6.3) and seeded redraws of any randomised condition.

- Neo et al.'s windows, given for the 32 layers of LLaVA-1.5 as 1-10, 5-14, 11-20, 15-24, 21-31, are scaled to the
  model (each bound times n_layers / 32, rounded half up); their LLaVA-Phi-3 analysis slides a window of 10.
- Liu et al.'s controls block as many (layer, KV head) units as the knockout, drawn from the whole layer group the
  knockout's keys come from (its `control_layers`, e.g. every late layer): input-dependent units (those the
  knockout leaves) and random units (any). Each control is drawn `draws` times with its own seed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from interventions.spec import InterventionSpec, Knockout

NEO_WINDOWS_32 = ((1, 10), (5, 14), (11, 20), (15, 24), (21, 31))
NEO_LAYERS = 32  # LLaVA-1.5's decoder layers, which the windows above are given for
SLIDING = "sliding"  # --layer-windows sliding[:SIZE]
NEO = "neo"
DEFAULT_SLIDING_SIZE = 10
CONTROL_KINDS = ("input-dependent", "random")


def neo_windows(n_layers: int) -> list[tuple[int, int]]:
    """Neo et al.'s five overlapping windows (first, last layer; inclusive) scaled to `n_layers` layers, without
    repeats."""
    def scale(layer: int) -> int:
        return min(int(math.floor(layer * n_layers / NEO_LAYERS + 0.5)), n_layers - 1)

    return list(dict.fromkeys((scale(first), max(scale(first), scale(last))) for first, last in NEO_WINDOWS_32))


def sliding_windows(n_layers: int, size: int = DEFAULT_SLIDING_SIZE) -> list[tuple[int, int]]:
    """Every window of `size` consecutive layers (stride 1); one window of all layers when the model has fewer."""
    size = min(size, n_layers)
    return [(first, first + size - 1) for first in range(n_layers - size + 1)]


def windows(choice: str, n_layers: int) -> list[tuple[int, int]]:
    """The windows of `--layer-windows`: "neo", "sliding" or "sliding:SIZE"."""
    if choice == NEO:
        return neo_windows(n_layers)
    kind, _, size = choice.partition(":")
    if kind != SLIDING or (size and not size.isdigit()) or size == "0":
        raise ValueError(f"--layer-windows {choice!r}: use neo, sliding or sliding:SIZE")
    return sliding_windows(n_layers, int(size) if size else DEFAULT_SLIDING_SIZE)


def layer_window_conditions(spec: InterventionSpec, chosen: list[tuple[int, int]]) -> dict[str, InterventionSpec]:
    """The spec's knockouts restricted to each window (first, last layer), named "SPEC layers A-B"; windows in
    which the spec blocks nothing are left out."""
    conditions = {}
    for first, last in chosen:
        knockouts = tuple(replace(k, units=tuple(u for u in k.units if first <= u[0] <= last)) for k in spec.knockout)
        knockouts = tuple(k for k in knockouts if k.units)
        if knockouts:
            name = f"{spec.name} layers {first}-{last}"
            conditions[name] = replace(spec, name=name, knockout=knockouts, group_of=None)
    return conditions


def control_conditions(spec: InterventionSpec, n_kv_heads: int, draws: int = 10, seed: int = 0,
                       kinds: tuple[str, ...] = CONTROL_KINDS) -> dict[str, InterventionSpec]:
    """Liu et al.'s controls (`kinds`), `draws` seeded draws each, named "SPEC control: KIND #d" and reported together
    as "SPEC control: KIND" (`group_of`), each the control of the spec (`control_of`)."""
    conditions = {}
    for kind in kinds:
        kind_index = CONTROL_KINDS.index(kind)
        group = f"{spec.name} control: {kind}"
        for draw in range(draws):
            rng = np.random.default_rng([seed, kind_index, draw])
            knockouts = tuple(_control_knockout(k, n_kv_heads, kind, rng) for k in spec.knockout)
            name = f"{group} #{draw}"
            conditions[name] = replace(spec, name=name, knockout=knockouts, draw=draw, group_of=group,
                                       control_of=spec.name)
    return conditions


def _control_knockout(knockout: Knockout, n_kv_heads: int, kind: str, rng: np.random.Generator) -> Knockout:
    """As many units as `knockout` blocks, drawn from its control layers: outside its units (input-dependent) or
    anywhere (random)."""
    if any(head is None for _, head in knockout.units):
        raise ValueError("controls need per-head units (layer, kv_head); this knockout blocks whole layers")
    layers = knockout.control_layers or tuple(sorted(knockout.layers()))
    everything = [(layer, head) for layer in layers for head in range(n_kv_heads)]
    pool = everything if kind == "random" else [unit for unit in everything if unit not in set(knockout.units)]
    count = len(knockout.units)
    if len(pool) < count:
        raise ValueError(f"only {len(pool)} {kind} units in layers {list(layers)} for a control of {count}: block "
                         f"fewer units or give the knockout more control_layers")
    chosen = rng.choice(len(pool), size=count, replace=False)
    return replace(knockout, units=tuple(sorted(pool[i] for i in chosen)))


def redraws(spec: InterventionSpec, draws: int) -> dict[str, InterventionSpec]:
    """A randomised spec (random token sets) drawn `draws` times ("SPEC #d"), reported together under its name."""
    return {f"{spec.name} #{draw}": replace(spec, name=f"{spec.name} #{draw}", draw=draw, group_of=spec.name)
            for draw in range(draws)}
