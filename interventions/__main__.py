"""`python -m interventions spec|scenarios|poll|vqa|describe|loss`: intervention specs from analysis results, and evaluations with
and without them (results as CSV / JSON and figures in --out)."""

from __future__ import annotations

import sys

import matplotlib

matplotlib.use("Agg")  # files only; before anything imports pyplot

from analyses.command import chosen_command, command_parser  # noqa: E402
from capture.errors import CaptureError  # noqa: E402
from interventions.commands import COMMANDS  # noqa: E402
from interventions.spec import SpecError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser, _ = command_parser("python -m interventions", __doc__, COMMANDS)
    args = parser.parse_args(argv)
    command = chosen_command(COMMANDS, args.command)
    try:
        written = command.execute(command.options_from(args))
    except (SpecError, CaptureError, ValueError, FileNotFoundError) as error:  # token-set errors are ValueErrors
        print(f"error: {error}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
