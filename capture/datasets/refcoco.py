"""`refcoco`: RefCOCO, RefCOCO+ and RefCOCOg (Kazemzadeh et al. 2014, Mao et al. 2016), one record per
referring expression, from a non-pickle export of the refer toolkit's data.

Layout under --data-root (one data set's folder, as the refer toolkit lays it out, e.g. data/refcoco):

    instances.json              COCO annotations of the referred images (boxes, polygons / RLE, categories)
    refs(<partition>).json      the refs list: {ref_id, image_id, ann_id, split, sentences: [{raw, sent,
                                sent_id, ...}], ...}; also as refs(<partition>).jsonl (one ref a line) or
                                .parquet with those columns, or data/*.parquet (the Hugging Face export)
    COCO train2014 images       train2014/, images/train2014/, images/mscoco/images/train2014/, or the
                                toolkit's ../images/mscoco/images/train2014/

The toolkit's `refs(<partition>).p` is a pickle and is refused, never loaded: unpickling runs whatever code
the file names. Records: the image, `text` = the expression as written (`raw`; the toolkit's normalised
`sent` when there is no raw), annotation `object` (the referred instance: id = COCO annotation id, label,
box as pixel corners, iscrowd, segmentation in COCO polygons or RLE, decoded by the analyses), `image_id`,
`file_name`, `ref_id`, `sent_id`. `--split` val (default) / train / testA / testB (RefCOCO, RefCOCO+) / test
(RefCOCOg umd); `--subset` the partition (unc, google, umd) when the folder holds several exports.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import require_file
from capture.errors import CaptureError
from store import annotation as contract

NAME = "refcoco"
DEFAULT_SPLIT = "val"
EXPORT_SUFFIXES = (".json", ".jsonl", ".parquet")
IMAGE_FOLDERS = ("train2014", "images/train2014", "images/mscoco/images/train2014", "../images/mscoco/images/train2014")
REF_FIELDS = ("ref_id", "image_id", "ann_id", "split", "sentences")
HF_EXPORT = "data"  # the Hugging Face layout: one parquet file per split under data/


def open_refcoco(root: Path, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """One record per expression of the refs of `split` (default val), by ref id then sentence order."""
    split = split or DEFAULT_SPLIT
    instances_path = require_file(root / "instances.json", NAME, "COCO annotations of the referred images "
                                  "(instances.json)")
    refs_files = export_files(root, subset)
    image_dir = image_folder(root)
    refs = [ref for path in refs_files for ref in _read_refs(path)]
    chosen = sorted((ref for ref in refs if ref["split"] == split), key=lambda ref: ref["ref_id"])
    if not chosen:
        splits = sorted({str(ref["split"]) for ref in refs})
        raise CaptureError(f"{NAME}: no refs of --split {split!r} in {refs_files[0]} (splits: {', '.join(splits)})")
    try:
        coco = json.loads(instances_path.read_text())
        annotations = {a["id"]: a for a in coco["annotations"]}
        images = {i["id"]: i for i in coco["images"]}
        names = {c["id"]: c["name"] for c in coco["categories"]}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise CaptureError(f"{instances_path}: not COCO annotations ({error})") from None
    records = []
    for ref in chosen:
        ann, image = annotations.get(ref["ann_id"]), images.get(ref["image_id"])
        if ann is None or image is None:
            raise CaptureError(f"{NAME}: ref {ref['ref_id']} names annotation {ref['ann_id']} / image "
                               f"{ref['image_id']}, not in {instances_path}")
        try:
            referred, path = _object(ann, names[ann["category_id"]]), image_dir / image["file_name"]
        except KeyError as error:
            raise CaptureError(f"{instances_path}: annotation {ann.get('id')} or its image or category lacks "
                               f"{error}") from None
        for index, sentence in enumerate(ref["sentences"]):
            if limit is not None and len(records) >= limit:
                return Dataset(NAME, root, split, records)
            sent_id, text = sentence.get("sent_id", index), sentence.get("raw") or sentence.get("sent")
            if not text:
                raise CaptureError(f"{refs_files[0]}: ref {ref['ref_id']} sentence {index} has no raw or sent text")
            annotation = {
                contract.IMAGE_ID: ref["image_id"],
                contract.FILE_NAME: os.path.relpath(path, root),
                contract.OBJECT: referred,
                "ref_id": ref["ref_id"],
                "sent_id": sent_id,
            }
            records.append(Record(f"{ref['ref_id']}/{sent_id}", (path,), annotation, text))
    return Dataset(NAME, root, split, records)


def export_files(root: Path, partition: str | None) -> list[Path]:
    """The refs export of `partition` (the only one when None): refs(<partition>).json / .jsonl / .parquet, or
    the parquet files of data/; refuses pickles, and several exports without a partition."""
    if not root.is_dir():
        raise CaptureError(f"{NAME}: --data-root {root} is not a folder")
    exports: dict[str, list[Path]] = {}
    for path in sorted(root.glob("refs*")):
        match = re.fullmatch(r"refs(?:\((.+)\))?", path.stem)
        if match and path.suffix in EXPORT_SUFFIXES:
            exports.setdefault(match.group(1) or "", []).append(path)
    if (root / HF_EXPORT).is_dir() and list((root / HF_EXPORT).glob("*.parquet")):
        exports.setdefault(HF_EXPORT, sorted((root / HF_EXPORT).glob("*.parquet")))
    if not exports:
        _refuse_pickle(sorted(root.glob("refs*.p")))
        raise CaptureError(f"{NAME}: expected the refs export at {root}/refs(<partition>).json (or .jsonl, .parquet, "
                           "or data/*.parquet)")
    if partition is None:
        if len(exports) > 1:
            raise CaptureError(f"{NAME}: several refs exports under {root} ({', '.join(sorted(exports))}): "
                               "choose one with --subset")
        return next(iter(exports.values()))
    if partition not in exports:
        _refuse_pickle([root / f"refs({partition}).p"])
        raise CaptureError(f"{NAME}: no refs({partition}) export under {root} (found: {', '.join(sorted(exports))})")
    return exports[partition]


def _refuse_pickle(candidates: list[Path]) -> None:
    """One line pointing to a safe export when the refs exist only as the toolkit's pickle."""
    for path in candidates:
        if path.is_file():
            raise CaptureError(f"{NAME}: {path} is a pickle, which is never loaded here (unpickling runs code the "
                               "file names); put a JSON, JSON-lines or parquet export of the same refs beside it, "
                               "e.g. the Hugging Face data set jxu124/refcoco's data/*.parquet")


def image_folder(root: Path) -> Path:
    """The COCO train2014 image folder, at the first of IMAGE_FOLDERS (relative to --data-root) that exists."""
    for folder in IMAGE_FOLDERS:
        if (root / folder).is_dir():
            return root / folder
    raise CaptureError(f"{NAME}: expected the COCO train2014 images at {root}/{IMAGE_FOLDERS[0]} "
                       f"(or {', '.join(IMAGE_FOLDERS[1:])})")


def _read_refs(path: Path) -> list[dict[str, Any]]:
    try:
        if path.suffix == ".parquet":
            refs = _read_parquet(path)
        elif path.suffix == ".jsonl":
            refs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        else:
            refs = json.loads(path.read_text())
    except (json.JSONDecodeError, OSError, KeyError, ValueError) as error:
        raise CaptureError(f"{path}: not a refs export ({str(error).splitlines()[0]})") from None
    if not isinstance(refs, list) or not all(isinstance(ref, dict) for ref in refs):
        raise CaptureError(f"{path}: expected a list of refs")
    for ref in refs:
        missing = [key for key in REF_FIELDS if key not in ref]
        if missing:
            raise CaptureError(f"{path}: a ref without {', '.join(missing)} (ref_id {ref.get('ref_id')})")
        if not isinstance(ref["sentences"], list) or not all(isinstance(s, dict) for s in ref["sentences"]):
            raise CaptureError(f"{path}: ref {ref['ref_id']}'s sentences are not a list of {{raw, sent, sent_id}}")
    return refs


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CaptureError(f"{path}: reading parquet needs pyarrow (pip install pyarrow)") from None
    return pq.read_table(path, columns=list(REF_FIELDS)).to_pylist()


def _object(ann: dict[str, Any], label: str) -> dict[str, Any]:
    """The referred instance: COCO's x, y, w, h box as pixel corners, its segmentation as COCO stores it."""
    x, y, w, h = ann["bbox"]
    return {contract.OBJECT_ID: ann["id"], contract.LABEL: label, contract.BOX: [x, y, x + w, y + h],
            contract.ISCROWD: ann.get("iscrowd", 0), contract.SEGMENTATION: ann["segmentation"]}
