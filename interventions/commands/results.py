"""What the evaluation commands share: loading the model and data set, reading the specs compared, and writing
answers and scores (with their intervals) as tables."""

from __future__ import annotations

import re
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pandas as pd

from analyses.output import Output, markdown_table
from capture.datasets import Dataset, open_dataset
from capture.loading import LoadedModel, load_model, resolve_model
from interventions.commands.options import ModelOptions
from interventions.spec import NONE, InterventionSpec, bind_layers, load_spec

# options recorded in NAME_scores.json beside the model and data set (those of the command that has them)
RECORDED_OPTIONS = ("question", "answer_prefix", "instruction", "max_new_tokens", "seed", "negatives", "controls",
                    "control_draws", "layer_windows", "neo_selection", "object_area", "max_objects",
                    "hallucination_control")
SHOWN = re.compile(r"^(condition|negatives|draws|n_images|n|control)$")  # printed as they are


def load(options: ModelOptions) -> tuple[LoadedModel, Dataset]:
    """The model (with the chosen attention implementation) and the data set of `options`."""
    loaded = load_model(resolve_model(options.model, options.revision), options.dtype, options.device)
    loaded.model.set_attn_implementation(options.attention)
    dataset = open_dataset(options.dataset, options.data_root, options.split, options.limit, options.subset)
    return loaded, dataset


def conditions(specs: tuple[Path, ...], seed: int = 0) -> dict[str, InterventionSpec]:
    """"none" and every spec file by name, read before the model is loaded (a bad spec fails at once); random
    token sets are seeded by the run's `seed`."""
    return {NONE: InterventionSpec(), **{spec.name: replace(spec, seed=seed) for spec in map(load_spec, specs)}}


def for_model(compared: dict[str, InterventionSpec], loaded: LoadedModel) -> dict[str, InterventionSpec]:
    """The specs with `"layers": "all"` made explicit for the loaded model, and their layers checked."""
    n_layers = loaded.adapter.text_config(loaded.config).num_hidden_layers
    return {name: bind_layers(spec, n_layers) for name, spec in compared.items()}


def write_results(options: ModelOptions, output: Output, name: str, rows: list[dict[str, Any]],
                  scores: list[dict[str, Any]], compared: dict[str, InterventionSpec],
                  extra: dict[str, Any] | None = None) -> None:
    """NAME_answers.csv (one row per question and condition), NAME_scores.csv and NAME_scores.json (with the model,
    data set, options, every condition's spec and `extra` tables); the scores printed with their intervals."""
    recorded = {f.name: _plain(getattr(options, f.name)) for f in fields(options) if f.name in RECORDED_OPTIONS}
    output.csv(f"{name}_answers.csv", rows)
    output.csv(f"{name}_scores.csv", scores)
    output.json(f"{name}_scores.json", {"model": options.model, "dataset": options.dataset, **recorded, "scores": scores,
                                        **(extra or {}),
                                        "conditions": {key: spec.as_dict() for key, spec in compared.items()}})
    print(markdown_table(with_intervals(scores)))


def with_intervals(scores: list[dict[str, Any]]) -> pd.DataFrame:
    """The scores table for reading: each estimate as "value [low, high]", counts and names as they are."""
    table = pd.DataFrame(scores)
    shown = {}
    for column in table.columns:
        if SHOWN.match(column) or column.endswith("_n"):
            shown[column] = table[column]
        elif f"{column}_low" in table.columns:
            shown[column] = [_format(*values) for values in
                             zip(table[column], table[f"{column}_low"], table[f"{column}_high"], strict=True)]
    return pd.DataFrame(shown)


def _format(estimate: Any, low: Any, high: Any) -> str:
    if estimate is None or pd.isna(estimate):
        return "-"
    return f"{estimate:.1f} [{low:.1f}, {high:.1f}]" if not pd.isna(low) else f"{estimate:.1f}"


def _plain(value: Any) -> Any:
    """Option values as JSON (paths and tuples of paths as strings)."""
    if isinstance(value, Path):
        return str(value)
    return [str(v) for v in value] if isinstance(value, tuple) else value
