"""Where a command's results go: one folder, and one method per kind of file (JSON, xarray as Zarr, figure, CSV,
markdown). Every file written is recorded in `written`, which the command line prints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure


class Output:
    """The result folder of one command run (created on first use)."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.written: list[Path] = []

    def path(self, name: str) -> Path:
        """`name` inside the folder, recorded as written (for files the caller writes itself)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        self.written.append(path)
        return path

    def json(self, name: str, data: Any) -> Path:
        """`data` as indented JSON (numpy scalars and arrays converted)."""
        path = self.path(name)
        path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
        return path

    def zarr(self, name: str, result: xr.Dataset | xr.DataArray) -> Path:
        """An xarray result as a Zarr store (dict / list attributes as JSON strings, strings as variable-length)."""
        dataset = result.to_dataset() if isinstance(result, xr.DataArray) else result
        dataset = dataset.assign_attrs({k: json.dumps(v, default=_json_default) if isinstance(v, dict | list) else v
                                        for k, v in dataset.attrs.items()})
        # fixed-width unicode has no Zarr v3 spec yet; variable-length strings do
        fixed = {name: var.astype(object) for name, var in dataset.variables.items() if var.dtype.kind == "U"}
        dataset = dataset.assign_coords({k: v for k, v in fixed.items() if k in dataset.coords})
        dataset = dataset.assign({k: v for k, v in fixed.items() if k not in dataset.coords})
        path = self.path(name)
        dataset.to_zarr(path, mode="w", consolidated=False)
        return path

    def figure(self, name: str, figure: Figure) -> Path:
        """A matplotlib figure as PNG (closed afterwards)."""
        import matplotlib.pyplot as plt

        path = self.path(name)
        figure.savefig(path, dpi=120)
        plt.close(figure)
        return path

    def csv(self, name: str, table: pd.DataFrame | list[dict[str, Any]]) -> Path:
        """A table (or a list of rows) as CSV without the index."""
        path = self.path(name)
        pd.DataFrame(table).to_csv(path, index=False)
        return path

    def markdown(self, name: str, text: str) -> Path:
        """Markdown text as it is (see `markdown_table`)."""
        path = self.path(name)
        path.write_text(text)
        return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a markdown table (pandas' own `to_markdown` needs the tabulate package)."""
    lines = ["| " + " | ".join(map(str, table.columns)) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
