"""What the evaluation commands share: loading the model and data set, reading the specs compared, and writing
answers and scores."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import pandas as pd

from analyses.output import Output, markdown_table
from capture.datasets import Dataset, open_dataset
from capture.loading import LoadedModel, load_model, resolve_model
from interventions.commands.options import ModelOptions
from interventions.spec import NONE, InterventionSpec, load_spec

# options recorded in NAME_scores.json beside the model and data set (those of the command that has them)
RECORDED_OPTIONS = ("question", "answer_prefix", "instruction", "max_new_tokens", "seed")


def load(options: ModelOptions) -> tuple[LoadedModel, Dataset]:
    """The model (with the chosen attention implementation) and the data set of `options`."""
    loaded = load_model(resolve_model(options.model, options.revision), options.dtype, options.device)
    loaded.model.set_attn_implementation(options.attention)
    dataset = open_dataset(options.dataset, options.data_root, options.split, options.limit, options.subset)
    return loaded, dataset


def conditions(specs: tuple[Path, ...]) -> dict[str, InterventionSpec]:
    """"none" and every spec file by name, read before the model is loaded (a bad spec fails at once)."""
    return {NONE: InterventionSpec(), **{spec.name: spec for spec in map(load_spec, specs)}}


def write_results(options: ModelOptions, output: Output, name: str, rows: list[dict[str, Any]],
                  scores: list[dict[str, Any]], compared: dict[str, InterventionSpec]) -> None:
    """NAME_answers.csv (one row per question and condition), NAME_scores.csv and NAME_scores.json (with the model,
    data set, options and every condition's spec); the scores printed as a markdown table."""
    recorded = {f.name: getattr(options, f.name) for f in fields(options) if f.name in RECORDED_OPTIONS}
    output.csv(f"{name}_answers.csv", rows)
    output.csv(f"{name}_scores.csv", scores)
    output.json(f"{name}_scores.json", {"model": options.model, "dataset": options.dataset, **recorded, "scores": scores,
                                        "conditions": {key: spec.as_dict() for key, spec in compared.items()}})
    print(markdown_table(pd.DataFrame(scores).round(2)))
