"""`blink`: BLINK (Fu et al. 2024), 14 perception tasks as multiple-choice questions over 1-4 images, in the
layout of its Hugging Face release (BLINK-Benchmark/BLINK).

Layout under --data-root: one folder per task, `<Task>/<split>-00000-of-00001.parquet`, each row with `idx`
("val_Art_Style_1"), `question`, `sub_task`, `image_1` .. `image_4` (embedded images, null when a question has
fewer), `choices`, `answer` ("(A)"), `prompt` (question and options as the benchmark words them) and
`explanation`. Splits: val (default; the test split's answers are withheld).

The embedded images are written once into the cache (`<cache>/datasets/blink-images/...`, named
`<idx>_image_<k>`). Records, task by task, in file order: the images, the prompt as the user text, and `answer`
(the option letter as released, "(A)"; absent where withheld), `choices`, `subset` (the task) and `question_id`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.datasets.embedded import image_cache, read_parquet_rows, relative_name, save_embedded_image
from capture.datasets.layout import select_subsets
from capture.errors import CaptureError
from store import annotation as keys

TASKS = ("Art_Style", "Counting", "Forensic_Detection", "Functional_Correspondence", "IQ_Test", "Jigsaw",
         "Multi-view_Reasoning", "Object_Localization", "Relative_Depth", "Relative_Reflectance",
         "Semantic_Correspondence", "Spatial_Relation", "Visual_Correspondence", "Visual_Similarity")
SPLITS = ("val", "test")
IMAGE_COLUMNS = ("image_1", "image_2", "image_3", "image_4")
OPTION = re.compile(r"^\([A-Z]\)$")


def open_blink(root: Path, split: str | None = None, limit: int | None = None, subset: str | None = None) -> Dataset:
    """Records of the BLINK tasks `subset` names (comma-separated; default all 14) in `split`."""
    split = split or "val"
    if split not in SPLITS:
        raise CaptureError(f"--dataset blink has splits {', '.join(SPLITS)} (got --split {split!r})")
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected the BLINK task folders Art_Style/, ... inside)")
    tasks = select_subsets(subset, TASKS, "blink")
    files = {task: _parquet_files(root, task, split) for task in tasks}
    cache = image_cache("blink", root) / split
    records: list[Record] = []
    for task in tasks:
        for path in files[task]:
            for row in read_parquet_rows(path, "BLINK", ("idx", "prompt", "choices", "answer", "image_1")):
                if limit is not None and len(records) >= limit:
                    return Dataset("blink", root, split, records)
                records.append(_record(row, task, cache / task, path))
    return Dataset("blink", root, split, records)


def _parquet_files(root: Path, task: str, split: str) -> list[Path]:
    files = sorted((root / task).glob(f"{split}-*.parquet"))
    if not files:
        raise CaptureError(f"BLINK parquet file {root / task / f'{split}-00000-of-00001.parquet'} not found")
    return files


def _record(row: dict[str, Any], task: str, cache: Path, path: Path) -> Record:
    idx = str(row["idx"])
    images = tuple(save_embedded_image(row[column], cache / relative_name(f"{idx}_{column}"),
                                       f"BLINK: {path} row {idx} {column}")
                   for column in IMAGE_COLUMNS if row.get(column) is not None)
    choices = [str(choice) for choice in row["choices"] or []]
    annotation: dict[str, Any] = {keys.QUESTION_ID: idx, keys.SUBSET: task, keys.CHOICES: choices}
    answer = str(row["answer"] or "").strip()
    if OPTION.match(answer):
        annotation[keys.ANSWER] = answer
    return Record(idx, images, annotation, str(row["prompt"]))
