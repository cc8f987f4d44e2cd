"""`cvbench`: CV-Bench (Tong et al. 2024, Cambrian-1), 2D and 3D multiple-choice questions, in the layout of its
Hugging Face release (nyu-visionx/CV-Bench).

Layout under --data-root: `test_2d.jsonl` / `test_3d.jsonl` with the images in `img/` (each row's `filename`,
e.g. `img/2D/count/ade20k_10.png`, relative to the root), or the same rows in `test_2d.parquet` /
`test_3d.parquet` with the image embedded (`image`); the jsonl is read when both are there. Row fields: `idx`,
`type` (2D / 3D), `task` (Count, Relation, Depth, Distance), `question`, `choices`, `answer` ("(C)"), `prompt`
(question and options as the benchmark words them), `filename`, `source` (ADE20K, COCO, Omni3D), ...

Parquet images are written once into the cache (`<cache>/datasets/cvbench-images/...`, under their `filename`).
Records, 2D then 3D, in file order: the image, the prompt as the user text, and `answer` ("(C)"), `choices`,
`subset` (the task), `source` (CV-Bench's accuracy averages per source: (ADE20K + COCO) / 2 for 2D, Omni3D for
3D), `question_id` (`idx`) and `file_name`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.datasets.embedded import image_cache, read_parquet_rows, relative_name, save_embedded_image
from capture.datasets.layout import field, read_json_lines, select_subsets
from capture.errors import CaptureError
from store import annotation as keys

TASKS = ("Count", "Relation", "Depth", "Distance")
GROUPS = {"2D": ("Count", "Relation"), "3D": ("Depth", "Distance")}
REQUIRED = ("idx", "task", "prompt", "choices", "answer", "source")


def open_cvbench(root: Path, split: str | None = None, limit: int | None = None, subset: str | None = None) -> Dataset:
    """Records of the CV-Bench tasks `subset` names (comma-separated task names, or 2D / 3D; default all)."""
    if split not in (None, "test"):
        raise CaptureError(f"--dataset cvbench has one split, test (got --split {split!r})")
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected test_2d.jsonl and img/, or test_2d.parquet, inside)")
    tasks = select_subsets(subset, TASKS, "cvbench", GROUPS)
    kinds = [kind for kind, members in GROUPS.items() if set(members) & set(tasks)]
    sources = {kind: _annotation_file(root, kind) for kind in kinds}
    records: list[Record] = []
    for kind in kinds:
        for row, where in _rows(sources[kind]):
            if str(row["task"]) not in tasks:
                continue
            if limit is not None and len(records) >= limit:
                return Dataset("cvbench", root, "test", records)
            records.append(_record(row, kind, root, sources[kind], where))
    return Dataset("cvbench", root, "test", records)


def _annotation_file(root: Path, kind: str) -> Path:
    """`test_<2d|3d>.jsonl`, else `test_<2d|3d>.parquet`."""
    for suffix in (".jsonl", ".parquet"):
        path = root / f"test_{kind.lower()}{suffix}"
        if path.is_file():
            return path
    raise CaptureError(f"CV-Bench annotation file {root / f'test_{kind.lower()}.jsonl'} not found (nor a .parquet)")


def _rows(path: Path) -> list[tuple[dict[str, Any], str]]:
    """(row, where it is) for each row of a jsonl or parquet annotation file, with the required fields present."""
    if path.suffix == ".parquet":
        return [(row, f"{path} idx {row['idx']}") for row in read_parquet_rows(path, "CV-Bench", (*REQUIRED, "image"))]
    rows = []
    for number, row in read_json_lines(path, "CV-Bench"):
        for key in (*REQUIRED, "filename"):
            field(row, key, f"{path}:{number}", "CV-Bench")
        rows.append((row, f"{path}:{number}"))
    return rows


def _record(row: dict[str, Any], kind: str, root: Path, source: Path, where: str) -> Record:
    filename = str(row.get("filename") or f"img/{kind}/{row['task']}/{row['idx']}")
    if source.suffix == ".parquet":
        stem = image_cache("cvbench", root) / relative_name(filename).with_suffix("")
        image = save_embedded_image(row["image"], stem, f"CV-Bench: {where} image")
    else:
        image = root / filename
    annotation = {keys.QUESTION_ID: row["idx"], keys.SUBSET: str(row["task"]), keys.SOURCE: str(row["source"]),
                  keys.CHOICES: [str(choice) for choice in row["choices"]], keys.ANSWER: str(row["answer"]).strip(),
                  keys.FILE_NAME: filename}
    return Record(f"{kind}/{row['idx']}", (image,), annotation, str(row["prompt"]))
