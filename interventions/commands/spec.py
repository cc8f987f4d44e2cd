"""`spec`: a knockout spec from the key list of `python -m analyses variance`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from analyses.command import Command
from analyses.output import Output
from analyses.variance import ALL_FLAGGED
from interventions.spec import KNOCKOUT, NAME, SpecError, knockout_entry, parse_spec, units_from_key_list
from store.arguments import option
from store.schema import TokenSet


@dataclass(frozen=True, kw_only=True)
class SpecOptions:
    keys: Path = option(help="key list written by `python -m analyses variance`")
    group: str | None = option(None, help="early, middle or late (default: every flagged key)")
    queries: str = option(TokenSet.TEXT.value, help="token set whose attention is blocked (default: text)")
    keys_set: str = option(TokenSet.IMAGE.value, help="token set that becomes invisible (default: image)")
    name: str | None = option(None, help="condition name (default: from the group)")
    out: Path = option(help="the spec file written")


class Spec(Command):
    name = "spec"
    help = "a knockout spec from a variance key list (input_agnostic_keys.json)"
    Options = SpecOptions

    def output(self, options: SpecOptions) -> Output:
        return Output(options.out.parent)  # --out names the file

    def run(self, options: SpecOptions, output: Output) -> None:
        units = units_from_key_list(options.keys, options.group)
        if not units:
            raise SpecError(f"key list {options.keys} flags no keys{' in group ' + options.group if options.group else ''}")
        name = options.name or f"{options.group or ALL_FLAGGED} input-agnostic keys"
        spec = {NAME: name, KNOCKOUT: [knockout_entry(options.queries, options.keys_set, units)]}
        parse_spec(spec)  # the same checks as when it is loaded
        output.json(options.out.name, spec)
