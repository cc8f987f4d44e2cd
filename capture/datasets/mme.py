"""`mme`: MME (Fu et al. 2023), 14 subtasks of yes / no questions, two per image, as released.

Layout under --data-root (`MME_Benchmark_release_version/`, or its `MME_Benchmark/` folder, which newer archives
hold): one folder per subtask. Five subtasks (artwork, celebrity, landmark, posters, scene) keep their images in
`<task>/images/` and the questions in `<task>/questions_answers_YN/<image stem>.txt`; the other nine keep
`<image stem>.txt` beside each image in `<task>/`. Each question file holds one question a line,
`<question>\\t<Yes|No>`. A subtask folder without those files may instead have its questions in `<task>.txt`
beside it, tab-separated `<image name>\\t<question>\\t<answer>[\\t<prediction>]`: the per-subtask files the
official eval tool (`eval_tool/calculation.py`) reads.

Records, subtask by subtask in the eval tool's order, images by name, questions in file order: the image, the
question as the user text, and `answer` (yes / no, lower case as the eval tool compares), `subset` (the
subtask), `image_id` (the image's stem; MME's accuracy+ needs both questions of an image right),
`question_id` and `file_name`.
"""

from __future__ import annotations

from pathlib import Path

from capture.datasets.base import IMAGE_SUFFIXES, Dataset, Record
from capture.datasets.layout import select_subsets
from capture.errors import CaptureError
from store import annotation as keys

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
SUBTASKS = PERCEPTION + COGNITION
GROUPS = {"perception": PERCEPTION, "cognition": COGNITION}
NESTED = "MME_Benchmark"  # newer archives: MME_Benchmark_release_version/MME_Benchmark/<task>/


def open_mme(root: Path, split: str | None = None, limit: int | None = None, subset: str | None = None) -> Dataset:
    """Records of the MME subtasks `subset` names (comma-separated; also "perception" / "cognition"; default all)."""
    if split is not None:
        raise CaptureError(f"--dataset mme has no splits (got --split {split!r})")
    base = root / NESTED if (root / NESTED).is_dir() else root
    if not base.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected the MME subtask folders existence/, count/, ... inside)")
    records: list[Record] = []
    for task in select_subsets(subset, SUBTASKS, "mme", GROUPS):
        questions = _task_questions(base, task)
        for image, number, question, answer in questions:
            if limit is not None and len(records) >= limit:
                return Dataset("mme", root, None, records)
            records.append(_record(base, task, image, number, question, answer))
    return Dataset("mme", root, None, records)


def _task_questions(base: Path, task: str) -> list[tuple[Path, int, str, str]]:
    """(image path, question number in its file, question, answer) of one subtask."""
    folder = base / task
    if not folder.is_dir():
        raise CaptureError(f"MME subtask folder {folder}/ not found")
    if (folder / "questions_answers_YN").is_dir():
        question_files, image_dir = sorted((folder / "questions_answers_YN").glob("*.txt")), folder / "images"
    else:
        question_files, image_dir = sorted(folder.glob("*.txt")), folder
    if question_files:
        return [(_image_of(image_dir, path.stem), number, question, answer)
                for path in question_files for number, (question, answer) in enumerate(_pairs(path, 2))]
    listing = base / f"{task}.txt"
    if not listing.is_file():
        raise CaptureError(f"MME subtask {task}: no question files in {folder}/ (<image>.txt or "
                           f"questions_answers_YN/) and no {listing}")
    rows = _pairs(listing, 3)
    numbers: dict[str, int] = {}
    questions = []
    for image_name, question, answer in rows:
        numbers[image_name] = numbers.get(image_name, -1) + 1
        image = (image_dir if (image_dir / image_name).is_file() else folder / "images") / image_name
        questions.append((image, numbers[image_name], question, answer))
    return sorted(questions, key=lambda q: (q[0].name, q[1]))


def _pairs(path: Path, n_fields: int) -> list[tuple[str, ...]]:
    """The first `n_fields` tab-separated fields of each non-blank line; the last must be a yes / no answer."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8-sig").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.rstrip("\r\n").split("\t")
        if len(parts) < n_fields:
            raise CaptureError(f"MME: {path}:{number} has {len(parts)} tab-separated fields, expected {n_fields}")
        row = tuple(part.strip() for part in parts[:n_fields])
        if row[-1].lower() not in ("yes", "no"):
            raise CaptureError(f"MME: {path}:{number} has answer {row[-1]!r} (expected Yes or No)")
        rows.append(row)
    return rows


def _image_of(image_dir: Path, stem: str) -> Path:
    """The image file `<stem>.<ext>` in `image_dir` (a missing one is skipped and counted at capture)."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (image_dir / f"{stem}{suffix}", image_dir / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return image_dir / f"{stem}.jpg"


def _record(base: Path, task: str, image: Path, number: int, question: str, answer: str) -> Record:
    question_id = f"{task}/{image.stem}/{number}"
    annotation = {keys.QUESTION_ID: question_id, keys.ANSWER: answer.lower(), keys.SUBSET: task,
                  keys.IMAGE_ID: image.stem, keys.FILE_NAME: str(image.relative_to(base))}
    return Record(question_id, (image,), annotation, question)
