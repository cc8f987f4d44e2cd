"""Options the evaluation commands share: the model and data set to run, and the intervention specs compared."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from capture.datasets import DATASETS
from store.arguments import option


@dataclass(frozen=True, kw_only=True)
class ModelOptions:
    """A model run over a data set, its results in a folder."""

    model: str = option("tiny-llava-ov", help="alias, hub id or local checkpoint directory")
    revision: str | None = option(None, help="hub revision (branch, tag or commit) to load from the HF cache")
    dataset: str = option("synthetic-coco", choices=DATASETS, help="data set reader (see README, Datasets)")
    data_root: Path | None = option(
        None, help="dataset directory (synthetic-coco: where to generate it; manifest: the .jsonl file)")
    split: str | None = option(None, help="the data set's split (coco: val2017 by default; see README, Data sets read natively)")
    subset: str | None = option(None, help="part of the data set, comma-separated (SPair categories, DAVIS sequences, Pascal-5i "
                                      "folds, POPE settings, ...; see README, Data sets read natively)")
    limit: int | None = option(None, help="first N records")
    dtype: str = option("auto", help="compute dtype: auto, bf16, fp16 or fp32")
    device: str = option("auto", help="auto, cpu, cuda or cuda:N")
    attention: str = option("sdpa", choices=("sdpa", "eager"),
                            help="attention implementation (both honour the knockout mask)")
    out: Path = option(help="directory for tables and figures")


@dataclass(frozen=True, kw_only=True)
class ConditionOptions(ModelOptions):
    """A model run with and without each intervention spec."""

    spec: tuple[Path, ...] = option((), repeat=True, help="intervention spec (repeatable)")
    seed: int = option(0, help="the run's seed: random token sets (with each sample id), absent objects, control "
                               "units and draws")
