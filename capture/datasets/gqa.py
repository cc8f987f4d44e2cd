"""`gqa`: GQA (Hudson & Manning 2019) balanced questions, as released (questions1.2 + images).

Layout under --data-root: `questions1.2/<split>_balanced_questions.json` (one object keyed by question id, each
question with `imageId`, `question`, `answer`, `fullAnswer`, `types`, ...) and `images/<imageId>.jpg`. Splits:
testdev (default, the split VLM papers report), val, train.

Records in file order: the image, the question as the user text, and `answer` (GQA's short answer),
`question_id`, `image_id` and `file_name`.
"""

from __future__ import annotations

from pathlib import Path

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import field, read_json, require_dir, require_file
from capture.errors import CaptureError
from store import annotation as keys

SPLITS = ("testdev", "val", "train")
DEFAULT_SPLIT = "testdev"


def open_gqa(root: Path, split: str | None = None, limit: int | None = None) -> Dataset:
    """Records of the balanced questions of `split`."""
    split = split or DEFAULT_SPLIT
    if split not in SPLITS:
        raise CaptureError(f"--dataset gqa has splits {', '.join(SPLITS)} (got --split {split!r})")
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected questions1.2/ and images/ inside)")
    path = require_file(root / "questions1.2" / f"{split}_balanced_questions.json", "GQA", "question file")
    image_dir = require_dir(root / "images", "GQA", "image folder")
    questions = read_json(path, "GQA")
    if not isinstance(questions, dict):
        raise CaptureError(f"GQA: {path} is not an object keyed by question id")
    records = []
    for question_id, entry in list(questions.items())[:limit]:
        where = f"{path} question {question_id}"
        if not isinstance(entry, dict):
            raise CaptureError(f"GQA: {where} is not an object")
        image_id = str(field(entry, "imageId", where, "GQA"))
        annotation = {keys.QUESTION_ID: question_id, keys.IMAGE_ID: image_id, keys.FILE_NAME: f"images/{image_id}.jpg",
                      keys.ANSWER: str(field(entry, "answer", where, "GQA"))}
        records.append(Record(question_id, (image_dir / f"{image_id}.jpg",), annotation,
                              str(field(entry, "question", where, "GQA"))))
    return Dataset("gqa", root, split, records)
