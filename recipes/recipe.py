"""What a recipe is: a paper's result, the data sets it reads (with the layout each is expected in), and a chain of
our capture / analysis / intervention calls that writes a figure and a table of our number beside the paper's."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from analyses.output import markdown_table

TABLE = "results"  # results.csv and results.md in the recipe's folder
COLUMNS = ("result", "ours", "low", "high", "n", "paper", "source", "note")


class MissingData(ValueError):
    """A data set the recipe needs was not given (or its folder does not exist); the message is one line."""


@dataclass(frozen=True)
class Recipe:
    """One paper result. `data`: data set name -> the layout expected under its folder; `optional`: the names of
    `data` the recipe runs without (their part is then left out and said in the table)."""

    name: str
    paper: str
    result: str
    settings: str
    data: dict[str, str]
    run: Callable[[Context], list[dict[str, Any]]]
    optional: tuple[str, ...] = ()

    def missing(self, given: dict[str, Path]) -> list[str]:
        """One line per required data set not given or not on disk."""
        lines = []
        for name, layout in self.data.items():
            if name in self.optional:
                continue
            if name not in given:
                lines.append(f"recipe {self.name} needs --data {name}=DIR: {layout}")
            elif not given[name].is_dir():
                lines.append(f"recipe {self.name}: --data {name}={given[name]} is not a folder; expected {layout}")
        return lines


@dataclass
class Context:
    """Where a recipe runs: the model (alias, hub id or directory), the data set folders by name, its output
    folder, a sample limit for quick runs (None: the paper's counts; with it, `sweep` takes the quick settings) and the
    compute dtype / device."""

    model: str
    data: dict[str, Path]
    out: Path
    limit: int | None = None
    dtype: str = "auto"
    device: str = "auto"
    written: list[Path] = field(default_factory=list)

    def count(self, paper_count: int | None) -> int | None:
        """Samples to use: the paper's count, or --limit when given (smaller for tests and quick looks)."""
        if self.limit is None:
            return paper_count
        return self.limit if paper_count is None else min(self.limit, paper_count)

    def sweep(self, paper: Any, quick: Any) -> Any:
        """A repeated part's setting (episodes, random draws, kept-token counts): the paper's, or with --limit a
        quick one, so that a quick look stays quick."""
        return paper if self.limit is None else quick

    def folder(self, name: str) -> Path:
        path = self.out / name
        path.mkdir(parents=True, exist_ok=True)
        return path


def row(result: str, ours: Any, paper: Any, source: str, low: Any = None, high: Any = None, n: Any = None,
        note: str = "") -> dict[str, Any]:
    """One line of a recipe's table: our number (with its 95% interval and n where there is one) beside the
    paper's, and where in the paper that number is."""
    return {"result": result, "ours": ours, "low": low, "high": high, "n": n, "paper": paper, "source": source,
            "note": note}


def write_table(rows: list[dict[str, Any]], out: Path, header: str) -> list[Path]:
    """results.csv and results.md (a title line, then the table) in `out`."""
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    csv, md = out / f"{TABLE}.csv", out / f"{TABLE}.md"
    table.to_csv(csv, index=False)
    md.write_text(f"{header}\n\n{markdown_table(_rounded(table))}")
    return [csv, md]


def _rounded(table: pd.DataFrame) -> pd.DataFrame:
    shown = table.copy()
    for column in ("ours", "low", "high"):
        shown[column] = [round(v, 4) if isinstance(v, float) else v for v in shown[column]]
    shown["n"] = pd.Series([int(v) if isinstance(v, float) and v == v else v for v in shown["n"]], dtype=object)
    return shown.astype(object).where(shown.notna(), "")
