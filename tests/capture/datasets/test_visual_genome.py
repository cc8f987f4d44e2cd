"""Visual Genome read as released, and Jung et al.'s seen / unseen label split.

The fixture follows Visual Genome v1.4's download page (visualgenome.org/api/v0/api_home.html) and the Hugging
Face loader of it (huggingface/datasets, datasets/visual_genome): objects.json is a list of {image_id, image_url,
objects: [{object_id, x, y, w, h, names, synsets, merged_object_ids}]}; image_data.json a list of {image_id,
width, height, url, coco_id, flickr_id}, the url naming the image folder (VG_100K or VG_100K_2).
"""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

import store.reader
from capture.datasets import expand_samples, open_dataset
from capture.datasets.visual_genome import class_labels, image_split
from capture.errors import CaptureError
from capture.run import CaptureOptions, run_capture

URL = "https://cs.stanford.edu/people/rak248/{folder}/{image_id}.jpg"
WIDTH, HEIGHT = 64, 48
# image 1, written out by hand
IMAGE_1 = [
    {"object_id": 1058549, "x": 0, "y": 0, "w": 20, "h": 10, "names": ["dog"], "synsets": ["dog.n.01"], "merged_object_ids": []},
    {"object_id": 1058550, "x": 5, "y": 6, "w": 30, "h": 20, "names": ["white car"], "synsets": ["car.n.01"],
     "merged_object_ids": []},
    {"object_id": 1058551, "x": 40, "y": 2, "w": 10, "h": 10, "names": ["white clouds"], "synsets": [], "merged_object_ids": []},
    {"object_id": 1058552, "x": 1, "y": 30, "w": 12, "h": 12, "names": ["zebra"], "synsets": ["zebra.n.01"],
     "merged_object_ids": []},
    {"object_id": 1058553, "x": 30, "y": 30, "w": 8, "h": 9, "names": ["dog"], "synsets": ["dog.n.03"], "merged_object_ids": []},
]
# the other objects, spread over images 2-6: with image 1, 12 dog.n.01, 11 dog.n.03 (same lemma, fewer objects:
# dropped), 3 zebra (under 10: dropped), 10 each of cat, horse, cow, car, bus, truck
REST = ([("dog.n.01", "dogs")] * 11 + [("dog.n.03", "dog")] * 10 + [("zebra.n.01", "zebra")] * 2
        + [(f"{name}.n.01", name) for name in ("cat", "horse", "cow", "bus", "truck") for _ in range(10)]
        + [("car.n.01", "cars")] * 9)


@pytest.fixture
def vg_root(tmp_path):
    rng = np.random.RandomState(0)
    objects = {1: IMAGE_1, **{image_id: [] for image_id in range(2, 7)}}
    for k, (synset, name) in enumerate(REST):
        x, y = int(rng.randint(0, WIDTH - 10)), int(rng.randint(0, HEIGHT - 10))
        objects[2 + k % 5].append({"object_id": 2000 + k, "x": x, "y": y, "w": 8, "h": 8, "names": [name],
                                   "synsets": [synset], "merged_object_ids": []})
    image_data = []
    for image_id in range(1, 7):
        folder = "VG_100K_2" if image_id <= 3 else "VG_100K"
        path = tmp_path / folder / f"{image_id}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.randint(0, 255, (HEIGHT, WIDTH, 3), dtype=np.uint8)).save(path)
        image_data.append({"width": WIDTH, "url": URL.format(folder=folder, image_id=image_id), "height": HEIGHT,
                           "image_id": image_id, "coco_id": None, "flickr_id": None})
    (tmp_path / "image_data.json").write_text(json.dumps(image_data))
    (tmp_path / "objects.json").write_text(json.dumps([
        {"image_id": image_id, "objects": objects[image_id], "image_url": image_data[image_id - 1]["url"]}
        for image_id in range(1, 7)]))
    return tmp_path


def test_records_with_every_object(vg_root):
    dataset = open_dataset("visual-genome", vg_root, None, None)
    assert [r.sample_id for r in dataset.records] == ["1", "2", "3", "4", "5", "6"]
    first = dataset.records[0]
    assert first.image_paths == (vg_root / "VG_100K_2" / "1.jpg",)
    assert first.annotation == {
        "image_id": 1, "file_name": "VG_100K_2/1.jpg",
        "objects": [{"id": 1058549, "label": "dog", "box": [0.0, 0.0, 20.0, 10.0]},
                    {"id": 1058550, "label": "white car", "box": [5.0, 6.0, 35.0, 26.0]},
                    {"id": 1058551, "label": "white clouds", "box": [40.0, 2.0, 50.0, 12.0]},
                    {"id": 1058552, "label": "zebra", "box": [1.0, 30.0, 13.0, 42.0]},
                    {"id": 1058553, "label": "dog", "box": [30.0, 30.0, 38.0, 39.0]}],
        "categories": ["dog", "white car", "white clouds", "zebra"]}
    assert dataset.records[4].image_paths == (vg_root / "VG_100K" / "5.jpg",)
    assert sum(len(r.annotation["objects"]) for r in dataset.records) == 5 + len(REST)
    assert [r.sample_id for r in expand_samples(dataset, "annotations").records[:2]] == ["1#1058549", "1#1058550"]


def test_class_labels_follow_jung_et_al():
    counts = Counter({"dog.n.01": 12, "dog.n.03": 11, "zebra.n.01": 9, "stop_sign.n.01": 10, "bank.n.01": 15,
                      "bank.n.09": 15, "st._john's_wort.n.01": 10})
    # zebra: under 10 objects; dog.n.03 loses to dog.n.01; the bank tie goes to the first name
    assert class_labels(counts) == {"dog.n.01": "dog", "stop_sign.n.01": "stop sign", "bank.n.01": "bank",
                                    "st._john's_wort.n.01": "st. john's wort"}


def test_seen_and_unseen_subsets(vg_root, cache_home):
    seen = open_dataset("visual-genome", vg_root, None, None, subset="seen")
    assert seen.records[0].annotation == {"image_id": 1, "file_name": "VG_100K_2/1.jpg", "subset": "seen",
                                          "objects": [{"id": 1058549, "label": "dog", "box": [0.0, 0.0, 20.0, 10.0]}],
                                          "categories": ["dog"]}
    labels = Counter(o["label"] for r in seen.records for o in r.annotation["objects"])
    assert labels == {"dog": 12, "cat": 10, "horse": 10, "cow": 10}
    unseen = open_dataset("visual-genome", vg_root, None, None, subset="unseen")
    assert unseen.records[0].annotation["objects"] == [{"id": 1058550, "label": "car", "box": [5.0, 6.0, 35.0, 26.0]}]
    assert Counter(o["label"] for r in unseen.records for o in r.annotation["objects"]) == {"car": 10, "bus": 10,
                                                                                           "truck": 10}
    split_files = list((cache_home / "datasets" / "visual-genome").glob("label-split-*.json"))
    saved = [json.loads(path.read_text()) for path in split_files]
    assert {"seen": ["cat", "cow", "dog", "horse"], "unseen": ["bus", "car", "truck"]} in [
        {"seen": s["seen"], "unseen": s["unseen"]} for s in saved]
    with pytest.raises(CaptureError, match=r"choose one label group \(seen or unseen\)"):
        open_dataset("visual-genome", vg_root, None, None, subset="seen,unseen")


def test_train_test_image_split(vg_root):
    split = image_split([6, 5, 4, 3, 2, 1])
    assert len(split["train"]) == 5 and len(split["test"]) == 1  # 80% of 6, rounded
    assert split["train"] | split["test"] == {1, 2, 3, 4, 5, 6} and not split["train"] & split["test"]
    assert image_split([1, 2, 3, 4, 5, 6]) == split
    test = open_dataset("visual-genome", vg_root, "test", None)
    assert [int(r.sample_id) for r in test.records] == sorted(split["test"])
    assert len(open_dataset("visual-genome", vg_root, "train", 3).records) == 3


def test_wrong_root_names_what_it_expected(vg_root, tmp_path):
    (vg_root / "objects.json").rename(vg_root / "objects_v1_2.json")
    with pytest.raises(CaptureError, match=r"^Visual Genome object file .*/objects.json not found$"):
        open_dataset("visual-genome", vg_root, None, None)
    (vg_root / "objects_v1_2.json").rename(vg_root / "objects.json")
    (vg_root / "VG_100K").rename(vg_root / "images")
    (vg_root / "VG_100K_2").rename(vg_root / "images2")
    with pytest.raises(CaptureError, match=r"^Visual Genome image folder .*/VG_100K/ not found \(nor VG_100K_2/\)$"):
        open_dataset("visual-genome", vg_root, None, None)
    with pytest.raises(CaptureError, match=r"splits train, test"):
        open_dataset("visual-genome", vg_root, "val", None)


def test_capture_bbox_prefixes(vg_root, tmp_path):
    out = tmp_path / "vg.zarr"
    summary = run_capture(CaptureOptions(model="tiny-llava-1.5", dataset="visual-genome", data_root=vg_root, out=out,
                                         samples="annotations", template="bbox", visual_prefix=True, limit=2,
                                         progress=False))
    assert (summary.captured, summary.skipped) == (2, 0)
    ds = store.reader.open(out)
    assert list(ds.sample_id.values) == ["1#1058549", "1#1058550"]
    second = json.loads(str(ds.annotation.values[1]))
    assert second["object"] == {"id": 1058550, "label": "white car", "box": [5.0, 6.0, 35.0, 26.0]}
    assert "next_token_id" in second
    # Jung et al.'s prompt, the box normalised by the 64 x 48 image: 5/64, 6/48, 35/64, 26/48
    prompt = str(ds.prompt.values[1])
    assert "bbox:[0.08,0.12,0.55,0.54]" in prompt and "white" not in prompt  # the prefix stops before the label


def test_the_readers_split_is_the_analyses_split():
    from analyses.clustering import split_labels
    from analyses.label_embeddings import embed_labels
    from capture.datasets.visual_genome import _spherical_split

    words = sorted(["dog", "cat", "horse", "cow", "car", "truck", "bus", "tree", "grass", "sky", "cloud", "boat"])
    assert _spherical_split(words) == split_labels(words, embed_labels(words))
