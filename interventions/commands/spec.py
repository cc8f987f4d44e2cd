"""`spec`: a knockout spec from the key list of `python -m analyses variance`.

The keys blocked are, by default, exactly the image tokens whose variance was measured (the key list's `part`:
`image:base`, `image:grid` or `image:patches`), so that the knockout acts on what was assessed; blocking any other
set (e.g. every image token, newlines included) is possible with --keys-set and is said in the spec's provenance.
Controls later draw their units from the whole layer group (`control_layers`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from analyses.command import Command
from analyses.output import Output
from analyses.variance import ALL_FLAGGED, MEASURED_PART, PART_NAMES
from interventions.spec import (
    KNOCKOUT,
    NAME,
    PROVENANCE,
    SpecError,
    group_layers,
    knockout_entry,
    parse_spec,
    read_key_list,
    units_from_key_list,
)
from store.arguments import option
from store.schema import ImagePart, TokenSet

# the key list's measured part -> the token set of those tokens
ASSESSED = {PART_NAMES[ImagePart.BASE]: "image:base", PART_NAMES[ImagePart.GRID]: "image:grid",
            PART_NAMES[None]: "image:patches"}


@dataclass(frozen=True, kw_only=True)
class SpecOptions:
    keys: Path = option(help="key list written by `python -m analyses variance`")
    group: str | None = option(None, help="early, middle or late (default: every flagged key)")
    queries: str = option(TokenSet.TEXT.value, help="token set whose attention is blocked (default: text)")
    keys_set: str | None = option(None, help="token set that becomes invisible (default: the image tokens whose "
                                             "variance was measured)")
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
            raise SpecError(f"key list {options.keys} flags no keys{' in group ' + options.group if options.group else ''}"
                            " (see its threshold and bimodality)")
        key_list = read_key_list(options.keys)
        assessed = ASSESSED.get(key_list.get(MEASURED_PART))
        blocked = options.keys_set or assessed or TokenSet.IMAGE.value
        if assessed is None:
            print(f"warning: key list {options.keys} does not say which image tokens were measured; blocking "
                  f"{blocked!r}", file=sys.stderr)
        elif blocked != assessed:
            print(f"warning: blocking {blocked!r}, but the variance was measured on {assessed!r} only", file=sys.stderr)
        name = options.name or f"{options.group or ALL_FLAGGED} input-agnostic keys"
        spec = {NAME: name,
                KNOCKOUT: [knockout_entry(options.queries, blocked, units, group_layers(options.keys, options.group))],
                PROVENANCE: {"key_list": str(options.keys), "group": options.group, "array": key_list.get("array"),
                             "measured_tokens": assessed, "blocked_tokens": blocked,
                             "blocks": "the measured tokens" if blocked == assessed else "tokens beyond those measured",
                             "threshold": key_list.get("threshold")}}
        parse_spec(spec)  # the same checks as when it is loaded
        output.json(options.out.name, spec)
