"""`spair`: SPair-71k (Min et al. 2019) as distributed (SPair-71k.tar.gz), one record per image pair.

Layout under --data-root (the SPair-71k folder):

    PairAnnotation/{trn,val,test}/<pair>.json   one file per pair, named `<id>-<src>-<trg>:<category>.json`
    JPEGImages/<category>/<imname>.jpg

A pair file holds `src_imname`, `trg_imname`, `category`, `src_kps` / `trg_kps` (matching [x, y] pixels, the
keypoints visible in both images, in the same order), `src_bndbox` / `trg_bndbox` (x1, y1, x2, y2 pixels),
`kps_ids`, and the difficulty flags `viewpoint_variation`, `scale_variation`, `truncation`, `occlusion`.

Records: the source and target images; annotation `category`, `keypoints` [source points, target points],
`bboxes` [source box, target box] (PCK@0.1's normaliser is the target box), `image_id` / `file_name` of the
source image, and the pair's `kps_ids` and difficulty flags as SPair names them. `--split` trn / val / test
(default test); `--subset` categories, comma-separated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import choose, require_dir
from capture.errors import CaptureError
from store import annotation as contract

NAME = "spair"
SPLITS = ("trn", "val", "test")
DEFAULT_SPLIT = "test"
REQUIRED_FIELDS = ("src_imname", "trg_imname", "category", "src_kps", "trg_kps", "src_bndbox", "trg_bndbox")
KEPT_FIELDS = ("kps_ids", "viewpoint_variation", "scale_variation", "truncation", "occlusion")


def open_spair(root: Path, split: str | None, limit: int | None, subset: str | None = None) -> Dataset:
    """SPair-71k pairs of `split` (default test), sorted by file name; `subset`: categories, comma-separated."""
    split = split or DEFAULT_SPLIT
    if split not in SPLITS:
        raise CaptureError(f"{NAME}: unknown --split {split!r} (choose from {', '.join(SPLITS)})")
    pair_dir = require_dir(root / "PairAnnotation" / split, NAME, f"{split} pair files (PairAnnotation/{split}/*.json)")
    image_dir = require_dir(root / "JPEGImages", NAME, "images by category (JPEGImages/<category>/)")
    categories = sorted(p.name for p in image_dir.iterdir() if p.is_dir())
    wanted = choose(subset, categories, NAME)
    records = []
    for path in sorted(pair_dir.glob("*.json")):
        if limit is not None and len(records) >= limit:
            break
        if wanted is not None and path.stem.rpartition(":")[2] not in wanted:
            continue  # the file name ends with ":<category>": no need to open pairs of other categories
        pair = _read_pair(path)
        if wanted is not None and pair["category"] not in wanted:
            continue
        records.append(_record(root, path, pair))
    if not records:
        raise CaptureError(f"{NAME}: no pairs in {pair_dir}" + (f" for categories {subset}" if subset else ""))
    return Dataset(NAME, root, split, records)


def _read_pair(path: Path) -> dict[str, Any]:
    try:
        pair = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise CaptureError(f"{path}: not valid JSON ({error.msg})") from None
    missing = [key for key in REQUIRED_FIELDS if key not in pair] if isinstance(pair, dict) else list(REQUIRED_FIELDS)
    if missing:
        raise CaptureError(f"{path}: not an SPair pair file (missing {', '.join(missing)})")
    if len(pair["src_kps"]) != len(pair["trg_kps"]):
        raise CaptureError(f"{path}: {len(pair['src_kps'])} source but {len(pair['trg_kps'])} target keypoints")
    return pair


def _record(root: Path, path: Path, pair: dict[str, Any]) -> Record:
    category = pair["category"]
    images = [f"JPEGImages/{category}/{pair[key]}" for key in ("src_imname", "trg_imname")]
    annotation: dict[str, Any] = {
        contract.CATEGORY: category,
        contract.IMAGE_ID: Path(pair["src_imname"]).stem,
        contract.FILE_NAME: images[0],
        contract.KEYPOINTS: [[[float(v) for v in point] for point in pair[key]] for key in ("src_kps", "trg_kps")],
        contract.BBOXES: [[float(v) for v in pair[key]] for key in ("src_bndbox", "trg_bndbox")],
        **{key: pair[key] for key in KEPT_FIELDS if key in pair},
    }
    return Record(path.stem, tuple(root / image for image in images), annotation)
