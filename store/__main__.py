"""`python -m store info PATH` and `python -m store validate PATH`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from store.info import describe
from store.validate import validate


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m store", description="Inspect activation stores.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="what is in a store").add_argument("path", type=Path)
    commands.add_parser("validate", help="check completeness, shapes, dtypes, provenance").add_argument("path", type=Path)
    args = parser.parse_args(argv)
    if not args.path.exists():
        print(f"error: {args.path} does not exist", file=sys.stderr)
        return 2
    try:
        if args.command == "info":
            print("\n".join(describe(args.path)))
            return 0
        problems = validate(args.path)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if problems:
        print(f"INVALID {args.path}: {len(problems)} problem(s)")
        print("\n".join(f"  - {p}" for p in problems))
        return 1
    print(f"valid: {args.path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
