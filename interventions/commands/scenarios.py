"""`scenarios`: Neo et al.'s three attention-blocking scenarios (§4.2) as spec files, every layer blocked (restrict
them to layer windows with `poll --layer-windows neo`):

    object+B -> last            the last position cannot see the object's tokens and their B-token buffer
    non-object -> last          the last position cannot see the image tokens outside object+1
    non-last-row -> last-row    the last row of visual tokens cannot see the other visual tokens
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyses.command import Command
from analyses.output import Output
from interventions.spec import ALL_LAYERS, KEYS, KNOCKOUT, LAYERS, NAME, QUERIES, parse_spec
from store.arguments import option
from store.schema import TokenSet


def scenario_specs(buffers: list[int]) -> dict[str, dict]:
    """file stem -> spec (JSON form) of each scenario; one object scenario per buffer."""
    last = TokenSet.LAST.value
    pairs = [(f"object+{b}" if b else "object", last) for b in buffers]
    pairs += [("non-object", last), ("non-last-row", "last-row")]
    specs = {}
    for keys, queries in pairs:
        name = f"{keys} -> {queries}"
        specs[f"block-{keys}-to-{queries}".replace("+", "")] = {
            NAME: name, KNOCKOUT: [{QUERIES: queries, KEYS: keys, LAYERS: ALL_LAYERS}]}
    return specs


@dataclass(frozen=True, kw_only=True)
class ScenariosOptions:
    buffers: str = option("1", help="buffers of the object scenario, comma-separated (Neo et al. test 0, 1, 2)")
    out: Path = option(help="directory for the spec files")


class Scenarios(Command):
    name = "scenarios"
    help = "Neo et al.'s attention-blocking scenarios as spec files"
    Options = ScenariosOptions

    def run(self, options: ScenariosOptions, output: Output) -> None:
        buffers = [int(b) for b in options.buffers.split(",") if b.strip()]
        if any(b < 0 for b in buffers):
            raise ValueError("--buffers must be non-negative")
        for stem, spec in scenario_specs(buffers).items():
            parse_spec(spec)
            output.json(f"{stem}.json", spec)
