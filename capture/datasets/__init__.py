"""Dataset readers, found through one registry: `--dataset NAME` opens `DATASETS[NAME]`.

A reader turns `--data-root/--split/--limit` into an ordered list of records whose annotations follow
`store.annotation`. To add a data set, write a module with an `open_*` function and register it below.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from capture.datasets.base import Dataset, ImageLoadError, Record, load_image
from capture.datasets.blink import open_blink
from capture.datasets.coco import open_coco
from capture.datasets.cvbench import open_cvbench
from capture.datasets.davis import open_davis
from capture.datasets.folder import open_folder
from capture.datasets.gqa import open_gqa
from capture.datasets.manifest import open_manifest
from capture.datasets.mme import open_mme
from capture.datasets.msrc import open_msrc
from capture.datasets.pascal5i import open_pascal5i
from capture.datasets.photos import SUBSETS as PHOTO_SUBSETS
from capture.datasets.photos import open_photos
from capture.datasets.pope import open_pope
from capture.datasets.refcoco import open_refcoco
from capture.datasets.samples import SAMPLE_UNITS, expand_samples, record_fields
from capture.datasets.spair import open_spair
from capture.datasets.synthetic_coco import open_synthetic_coco
from capture.datasets.synthetic_correspondence import open_synthetic_correspondence
from capture.datasets.visual_genome import open_visual_genome
from capture.errors import CaptureError


@dataclass(frozen=True)
class DatasetReader:
    """How to open one data set: `open(root, split, limit)`, or `open(root, split, limit, subset)` for readers with
    named subsets (`subset_help` says what `--subset` selects); `needs_root`: refused without --data-root."""

    name: str
    open: Callable[..., Dataset]
    needs_root: bool
    description: str
    subset_help: str | None = None


DATASETS: dict[str, DatasetReader] = {reader.name: reader for reader in (
    DatasetReader("coco", lambda root, split, limit: open_coco(root, split or "val2017", limit), True,
                  "COCO layout: annotations/{instances,captions}_<split>.json and <split>/ under --data-root"),
    DatasetReader("folder", lambda root, split, limit: open_folder(root, limit), True,
                  "every image file under --data-root"),
    DatasetReader("manifest", lambda root, split, limit: open_manifest(root, limit), True,
                  "a JSONL manifest (--data-root FILE.jsonl or a folder holding manifest.jsonl)"),
    DatasetReader("synthetic-coco", open_synthetic_coco, False,
                  "generated COCO-format shapes (generated into the cache, or into --data-root)"),
    DatasetReader("synthetic-correspondence", lambda root, split, limit: open_synthetic_correspondence(root, limit),
                  False, "generated keypoint pairs, choice trials and videos with masks"),
    DatasetReader("spair", open_spair, True, "SPair-71k: PairAnnotation/<split>/*.json + JPEGImages/<category>/ "
                  "(--split trn/val/test, default test)", "categories, comma-separated (e.g. cat,dog)"),
    DatasetReader("davis", open_davis, True, "DAVIS-2017: JPEGImages/480p/, Annotations/480p/ palette PNGs, "
                  "ImageSets/2017/<split>.txt (--split val/train, default val)", "sequence names, comma-separated"),
    DatasetReader("msrc", open_msrc, True, "MSRC co-segmentation subset: <class>/ images with <class>/GroundTruth/ "
                  "masks (or Images/<class>/ + GroundTruth/<class>/)", "classes, comma-separated"),
    DatasetReader("pascal5i", open_pascal5i, True, "Pascal-5i: VOC2012 (JPEGImages/, SegmentationClass/, "
                  "ImageSets/Segmentation/) + SBD for --split train (default val)",
                  "folds 0-3, comma-separated (fold i: VOC classes 5i+1..5i+5)"),
    DatasetReader("refcoco", open_refcoco, True, "RefCOCO/+/g: instances.json + refs(<partition>).json/.jsonl/"
                  ".parquet + COCO train2014/ (--split val/train/testA/testB/test, default val)",
                  "the refs partition (unc, google, umd) when the folder holds several"),
    DatasetReader("pope", open_pope, True,
                  "POPE: coco_pope_{random,popular,adversarial}.json and COCO val2014/ under --data-root",
                  "POPE settings: random, popular, adversarial (comma-separated; default all three)"),
    DatasetReader("mme", open_mme, True,
                  "MME as released: one folder per subtask (images + question .txt files) under --data-root",
                  "MME subtasks (existence, count, ..., code_reasoning) or perception / cognition; default all 14"),
    DatasetReader("gqa", lambda root, split, limit: open_gqa(root, split, limit), True,
                  "GQA: questions1.2/<split>_balanced_questions.json and images/ under --data-root; "
                  "--split testdev (default), val, train"),
    DatasetReader("blink", open_blink, True,
                  "BLINK as on the Hugging Face hub: <Task>/<split>-*.parquet under --data-root; --split val (default), test",
                  "BLINK tasks (Art_Style, Counting, ...; comma-separated; default all 14)"),
    DatasetReader("cvbench", open_cvbench, True,
                  "CV-Bench as on the Hugging Face hub: test_{2d,3d}.jsonl + img/, or test_{2d,3d}.parquet, under --data-root",
                  "CV-Bench tasks Count, Relation, Depth, Distance, or 2D / 3D (comma-separated; default all)"),
    DatasetReader("visual-genome", open_visual_genome, True,
                  "Visual Genome: objects.json, image_data.json, VG_100K/ and VG_100K_2/ under --data-root; "
                  "--split train / test (80/20 of the images; default all)",
                  "Jung et al.'s label groups: seen or unseen (labels become their synset classes)"),
    DatasetReader("photos", open_photos, False,
                  "real photographs shipped in packages, hand-written captions; the quokka's box, keypoints and mask; "
                  "stereo and transformed-quokka keypoint pairs (copied into the cache, or into --data-root)",
                  subset_help=f"{' or '.join(PHOTO_SUBSETS)}: single photos, or the 2-image keypoint pairs"),
)}


def open_dataset(name: str, data_root: Path | None, split: str | None, limit: int | None,
                 subset: str | None = None) -> Dataset:
    """The records of dataset `name`; CaptureError for unknown names, missing roots or a subset the reader has not."""
    if limit is not None and limit < 1:
        raise CaptureError(f"--limit must be at least 1, got {limit}")
    if name not in DATASETS:
        raise CaptureError(f"unknown dataset {name!r} (choose from {', '.join(DATASETS)})")
    reader = DATASETS[name]
    if reader.needs_root and data_root is None:
        raise CaptureError(f"--dataset {name} needs --data-root")
    if subset is None:
        return reader.open(data_root, split, limit)
    if reader.subset_help is None:
        raise CaptureError(f"--dataset {name} has no subsets (--subset {subset!r})")
    return reader.open(data_root, split, limit, subset)


__all__ = ["DATASETS", "SAMPLE_UNITS", "Dataset", "DatasetReader", "ImageLoadError", "Record", "expand_samples",
           "load_image", "open_dataset", "record_fields"]
