"""What one sample is (`--samples`): an image record, one box annotation, or one category name (text only)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.errors import CaptureError

SAMPLE_UNITS = ("images", "annotations", "categories")


def expand_samples(dataset: Dataset, unit: str, text_only: bool = False) -> Dataset:
    """`dataset` with one record per `unit`; `text_only` drops every record's images.

    annotations: one record per object of `annotation["objects"]` (sample id "<image id>#<object id>"),
    the object in `annotation["object"]`. categories: one image-free record per distinct label, the
    label as its text.
    """
    if unit not in SAMPLE_UNITS:
        raise CaptureError(f"unknown --samples {unit!r} (choose from {', '.join(SAMPLE_UNITS)})")
    records = dataset.records
    if unit == "annotations":
        records = [
            replace(record, sample_id=f"{record.sample_id}#{obj.get('id', k)}",
                    annotation={**_without_objects(record.annotation), "object": obj})
            for record in records for k, obj in enumerate(record.annotation.get("objects", []))
        ]
        if not records:
            raise CaptureError(f"--samples annotations: dataset {dataset.name} has no box annotations (objects)")
    elif unit == "categories":
        labels = sorted({label for r in records for label in _labels(r)})
        if not labels:
            raise CaptureError(f"--samples categories: dataset {dataset.name} names no categories or labels")
        records = [Record(f"category:{label}", (), {"label": label}, text=label) for label in labels]
    if text_only:
        records = [replace(r, image_paths=()) for r in records]
    return replace(dataset, records=records)


def record_fields(record: Record) -> dict[str, Any]:
    """Fields a prompt or prefix template may name: caption, captions, label, categories, text, plus
    any string field of the record's annotation."""
    annotation = record.annotation
    fields: dict[str, Any] = {k: v for k, v in annotation.items() if isinstance(v, str)}
    if annotation.get("captions"):
        fields["caption"] = annotation["captions"][0]
        fields["captions"] = " ".join(annotation["captions"])
    if "object" in annotation:
        fields["label"] = annotation["object"]["label"]
    if annotation.get("categories"):
        fields["categories"] = ", ".join(annotation["categories"])
    if record.text is not None:
        fields["text"] = record.text
    return fields


def _labels(record: Record) -> list[str]:
    annotation = record.annotation
    return [*annotation.get("categories", []), *(o["label"] for o in annotation.get("objects", [])),
            *([annotation["label"]] if isinstance(annotation.get("label"), str) else [])]


def _without_objects(annotation: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in annotation.items() if k != "objects"}
