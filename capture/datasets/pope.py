"""`pope`: POPE (Li et al. 2023), object-existence questions on COCO val2014, as its repository releases them.

Layout under --data-root: `coco_pope_{random,popular,adversarial}.json` (also found in `output/coco/`, where the
POPE repository keeps them, or `coco/`, as LLaVA's evaluation folder does) and COCO's `val2014/` image folder.
Each question file is JSON lines, one question a line: `question_id`, `image` (a val2014 file name), `text`
("Is there a <object> in the image?"), `label` (yes / no), and in recent releases `image_id`.

Records, in subset order (random, popular, adversarial), each in file order: the image, the question as the
user text, and an annotation with `answer` (yes / no), `label` (the object the question names), `subset`,
`question_id`, `image_id` and `file_name`.
"""

from __future__ import annotations

import re
from pathlib import Path

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import field, read_json_lines, require_dir, select_subsets
from capture.errors import CaptureError
from store import annotation as keys

SUBSETS = ("random", "popular", "adversarial")
QUESTION_DIRS = (".", "output/coco", "coco")  # the root itself, the POPE repository, LLaVA's eval/pope folder
IMAGE_DIR = "val2014"
QUESTION = re.compile(r"^\s*is there (?:an? )?(?P<object>.+?) in the (?:image|picture)\s*\?", re.IGNORECASE)
COCO_ID = re.compile(r"(\d+)\.\w+$")


def question_file(root: Path, subset: str) -> Path:
    """Where the question file of `subset` lies under `root` (the first of QUESTION_DIRS holding it)."""
    name = f"coco_pope_{subset}.json"
    for folder in QUESTION_DIRS:
        if (root / folder / name).is_file():
            return root / folder / name
    raise CaptureError(f"POPE question file {root / name} not found (nor in {' or '.join(f'{d}/' for d in QUESTION_DIRS[1:])})")


def question_object(question: str) -> str | None:
    """The object a POPE question asks about: "Is there a dining table in the image?" -> "dining table"."""
    match = QUESTION.match(question)
    return match["object"].strip() if match else None


def open_pope(root: Path, split: str | None = None, limit: int | None = None, subset: str | None = None) -> Dataset:
    """Records of the POPE questions of `subset` (comma-separated settings; default: all three)."""
    if split is not None:
        raise CaptureError(f"--dataset pope has no splits (got --split {split!r}): its questions are on COCO val2014")
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected coco_pope_random.json and {IMAGE_DIR}/ inside)")
    subsets = select_subsets(subset, SUBSETS, "pope")
    paths = {name: question_file(root, name) for name in subsets}
    image_dir = require_dir(root / IMAGE_DIR, "POPE", "COCO val2014 image folder")
    records: list[Record] = []
    for name in subsets:
        for number, entry in read_json_lines(paths[name], "POPE"):
            if limit is not None and len(records) >= limit:
                return Dataset("pope", root, None, records)
            records.append(_record(entry, name, image_dir, f"{paths[name]}:{number}"))
    return Dataset("pope", root, None, records)


def _record(entry: dict, subset: str, image_dir: Path, where: str) -> Record:
    question, image = str(field(entry, "text", where, "POPE")), str(field(entry, "image", where, "POPE"))
    answer = str(field(entry, "label", where, "POPE")).strip().lower()
    if answer not in ("yes", "no"):
        raise CaptureError(f"POPE: {where} has label {answer!r} (expected yes or no)")
    label = question_object(question)
    if label is None:
        raise CaptureError(f"POPE: {where} asks {question!r}, not 'Is there a/an <object> in the image?'")
    question_id = field(entry, "question_id", where, "POPE")
    image_id = entry.get("image_id")
    if image_id is None and (match := COCO_ID.search(image)):
        image_id = int(match[1])  # older releases: the id only in the file name, COCO_val2014_000000310196.jpg
    annotation = {keys.QUESTION_ID: question_id, keys.ANSWER: answer, keys.LABEL: label, keys.SUBSET: subset,
                  keys.FILE_NAME: f"{IMAGE_DIR}/{image}"}
    if image_id is not None:
        annotation[keys.IMAGE_ID] = image_id
    return Record(f"{subset}/{question_id}", (image_dir / image,), annotation, question)
