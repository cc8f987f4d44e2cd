"""The project's package modules, parsed: what the architecture checks walk over."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("store", "capture", "analyses", "interventions", "recipes", "toy", "benchmarks")


@dataclass(frozen=True)
class Module:
    name: str  # dotted, e.g. "capture.run"
    path: Path
    tree: ast.Module

    @property
    def package(self) -> str:
        return self.name.split(".")[0]

    @property
    def is_entry_point(self) -> bool:
        """A `__main__` module: a command, not library code."""
        return self.name.endswith("__main__")


def modules(root: Path = REPO, packages: tuple[str, ...] = PACKAGES) -> list[Module]:
    """Every .py file of the packages under `root`, parsed, sorted by name."""
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append(Module(name, path, ast.parse(path.read_text(), str(path))))
    return found
