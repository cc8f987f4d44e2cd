"""Functions longer than the limit in the package code (decorators and docstrings count; blank lines too).

    python -m tools.function_lengths [--limit 60]   # one line per long function; exit status 1 when there is one
"""

from __future__ import annotations

import argparse
import ast
import sys

from tools.source import REPO, modules

LIMIT = 60
PACKAGES = ("store", "capture", "analyses", "interventions", "recipes", "toy")


def long_functions(limit: int = LIMIT) -> list[tuple[str, int, str, int]]:
    """(file, line, function, length) of every function of the packages longer than `limit` lines."""
    found = []
    for module in modules(packages=PACKAGES):
        for node in ast.walk(module.tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = node.end_lineno - start + 1
                if length > limit:
                    found.append((module.path.relative_to(REPO).as_posix(), node.lineno, node.name, length))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.function_lengths", description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=LIMIT)
    args = parser.parse_args(argv)
    found = long_functions(args.limit)
    for path, line, name, length in found:
        print(f"{path}:{line}: {name} is {length} lines (limit {args.limit})")
    if not found:
        print(f"no function over {args.limit} lines")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
