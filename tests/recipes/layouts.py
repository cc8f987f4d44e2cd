"""The papers' data sets in miniature, one folder each under a shared root, in the layouts their releases use
(the same formats as the readers' fixtures in tests/capture/datasets/, which cite each format's description),
sized so that every recipe's chain has something to compute: pairs with keypoints, two videos, image sets that
share a class, a 5-shot class, referring expressions with masks, POPE questions, VG objects of eight classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image


def _image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.RandomState(seed).randint(0, 255, (height, width, 3), dtype=np.uint8)).save(path)


def _voc_palette() -> list[int]:
    """VOCdevkit's labelcolormap (also DAVIS's): the index's bits spread over R, G and B."""
    palette = []
    for index in range(256):
        r = g = b = 0
        for shift in range(7, -1, -1):
            r, g, b = r | (index & 1) << shift, g | ((index >> 1) & 1) << shift, b | ((index >> 2) & 1) << shift
            index >>= 3
        palette += [r, g, b]
    return palette


def _palette_png(path: Path, ids: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(ids, np.uint8), mode="P")
    image.putpalette(_voc_palette())
    image.save(path)


def _box_mask(height: int, width: int, box: tuple[int, int, int, int], value: int = 1) -> np.ndarray:
    x0, y0, x1, y1 = box
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = value
    return mask


def spair(root: Path) -> Path:
    """SPair-71k: PairAnnotation/test/<id>-<src>-<trg>:<category>.json and JPEGImages/<category>/."""
    for category in ("cat", "dog"):
        for k in range(2):
            _image(root / "JPEGImages" / category / f"{category}{k}.jpg", 64, 48, seed=len(category) + k)
    (root / "PairAnnotation/test").mkdir(parents=True)
    for number, category in enumerate(("cat", "dog", "cat"), start=1):
        src, trg = (f"{category}0", f"{category}1") if number < 3 else (f"{category}1", f"{category}0")
        pair = {"pair_id": number, "filename": f"{number:06d}-{src}-{trg}:{category}", "src_imname": f"{src}.jpg",
                "trg_imname": f"{trg}.jpg", "src_imsize": [64, 48, 3], "trg_imsize": [64, 48, 3],
                "src_bndbox": [4, 4, 40, 30], "trg_bndbox": [20, 10, 60, 44], "category": category,
                "src_kps": [[10, 12], [30, 20]], "trg_kps": [[28, 16], [50, 30]], "kps_ids": ["0", "1"],
                "mirror": 0, "viewpoint_variation": 1, "scale_variation": 0, "truncation": 0, "occlusion": 0}
        (root / "PairAnnotation/test" / f"{pair['filename']}.json").write_text(json.dumps(pair))
    return root


def davis(root: Path) -> Path:
    """DAVIS-2017: ImageSets/2017/val.txt, JPEGImages/480p/<seq>/, Annotations/480p/<seq>/ palette PNGs."""
    (root / "ImageSets/2017").mkdir(parents=True)
    (root / "ImageSets/2017/val.txt").write_text("bike\ncows\n")
    for sequence in ("bike", "cows"):
        for frame in range(3):
            _image(root / "JPEGImages/480p" / sequence / f"{frame:05d}.jpg", 32, 24, seed=frame)
            _palette_png(root / "Annotations/480p" / sequence / f"{frame:05d}.png",
                         _box_mask(24, 32, (4 + 2 * frame, 4, 16 + 2 * frame, 16)))
    return root


def msrc(root: Path) -> Path:
    """MSRC's co-segmentation subset as the Object Discovery download: <class>/<image>.bmp, <class>/GroundTruth/."""
    for label in ("cow", "plane"):
        for k in range(3):
            _image(root / label / f"{k}_s.bmp", 40, 30, seed=k + len(label))
            (root / label / "GroundTruth").mkdir(exist_ok=True)
            Image.fromarray(_box_mask(30, 40, (5 + 3 * k, 5, 25 + 3 * k, 25), 255), mode="L").save(
                root / label / "GroundTruth" / f"{k}_s.png")
    return root


def pascal5i(root: Path) -> Path:
    """VOC2012: JPEGImages/, ImageSets/Segmentation/val.txt, SegmentationClass/ palette PNGs (255: border); seven
    aeroplane (class 1, fold 0) images, enough for one 5-shot episode and its queries."""
    ids = [f"2007_{k:06d}" for k in range(1, 8)]
    (root / "ImageSets/Segmentation").mkdir(parents=True)
    (root / "ImageSets/Segmentation/val.txt").write_text("\n".join(ids) + "\n")
    for k, image_id in enumerate(ids):
        _image(root / "JPEGImages" / f"{image_id}.jpg", 40, 30, seed=k)
        classes = _box_mask(30, 40, (4 + 2 * k, 4, 24 + 2 * k, 20))
        classes[20, :] = 255
        _palette_png(root / "SegmentationClass" / f"{image_id}.png", classes)
    return root


def refcoco(root: Path) -> Path:
    """The refer toolkit's data/refcoco/: instances.json (COCO) + refs(unc).json, images in
    data/images/mscoco/images/train2014/; polygon segmentations."""
    data = root.parent
    images, annotations, refs = [], [], []
    for k in range(4):
        name = f"COCO_train2014_{k + 1:012d}.jpg"
        _image(data / "images/mscoco/images/train2014" / name, 40, 30, seed=k)
        images.append({"id": k + 1, "file_name": name, "width": 40, "height": 30})
        x = 4 + 4 * k
        annotations.append({"id": 100 + k, "image_id": k + 1, "category_id": 18 if k % 2 else 1, "iscrowd": 0,
                            "bbox": [x, 4, 16, 16], "area": 256, "segmentation": [[x, 4, x + 16, 4, x + 16, 20, x, 20]]})
        sentence = "the dog on the left" if k % 2 else "the man in the middle"
        refs.append({"ref_id": k, "image_id": k + 1, "ann_id": 100 + k, "split": "val", "category_id": 18 if k % 2 else 1,
                     "sent_ids": [k], "file_name": name, "sentences": [
                         {"tokens": sentence.split(), "raw": sentence, "sent_id": k, "sent": sentence}]})
    root.mkdir(parents=True)
    (root / "instances.json").write_text(json.dumps({"images": images, "annotations": annotations, "categories": [
        {"id": 1, "name": "person", "supercategory": "person"}, {"id": 18, "name": "dog", "supercategory": "animal"}]}))
    (root / "refs(unc).json").write_text(json.dumps(refs))
    return root


def pope(root: Path) -> Path:
    """POPE's output/coco/coco_pope_<setting>.json (JSON lines) beside COCO's val2014/."""
    lines = {"random": [], "popular": [], "adversarial": []}
    for k in range(3):
        name = f"COCO_val2014_{k + 1:012d}.jpg"
        _image(root / "val2014" / name, 48, 36, seed=k)
        for setting, absent in (("random", "giraffe"), ("popular", "person"), ("adversarial", "oven")):
            lines[setting] += [{"question_id": 2 * k, "image": name, "image_id": k + 1, "label": "yes",
                                "text": "Is there a dog in the image?"},
                               {"question_id": 2 * k + 1, "image": name, "image_id": k + 1, "label": "no",
                                "text": f"Is there a {absent} in the image?"}]
    (root / "output/coco").mkdir(parents=True)
    for setting, entries in lines.items():
        (root / "output/coco" / f"coco_pope_{setting}.json").write_text("".join(json.dumps(e) + "\n" for e in entries))
    return root


def mme(root: Path) -> Path:
    """MME_Benchmark_release_version/: <task>/<stem>.jpg with <stem>.txt beside it, `question\tYes|No` a line;
    two images of two questions each in the four subtasks Liu et al. use."""
    for seed, task in enumerate(("count", "color", "position", "existence")):
        for stem in ("0001", "0002"):
            _image(root / task / f"{stem}.jpg", 32, 24, seed=seed)
            (root / task / f"{stem}.txt").write_text(f"Is there a {task} one? Please answer yes or no.\tYes\n"
                                                     f"Is there a {task} two? Please answer yes or no.\tNo\n")
    return root


def blink(root: Path) -> Path:
    """BLINK's Hugging Face release: <Task>/val-00000-of-00001.parquet with columns idx, question, sub_task,
    image_1..image_4 (struct {bytes, path}, null when unused), choices, answer ("(A)"), prompt, explanation; two
    items of a reference and two options in each paired task."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    cell = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("idx", pa.string()), ("question", pa.string()), ("sub_task", pa.string()),
                        *[(f"image_{k}", cell) for k in range(1, 5)], ("choices", pa.list_(pa.string())),
                        ("answer", pa.string()), ("prompt", pa.string()), ("explanation", pa.string())])
    for task in ("Art_Style", "Visual_Similarity"):
        rows = []
        for item, answer in enumerate(("(A)", "(B)")):
            images = []
            for k in range(3):
                buffer = io.BytesIO()
                pixels = np.random.RandomState(100 * item + k).randint(0, 255, (32, 32, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(buffer, format="PNG")
                images.append({"bytes": buffer.getvalue(), "path": f"{task}_{item}_{k}.png"})
            question = "Which image is most similar to the reference image?"
            rows.append({"idx": f"val_{task}_{item + 1}", "question": question, "sub_task": task.replace("_", " "),
                         **{f"image_{k + 1}": image for k, image in enumerate(images)}, "image_4": None,
                         "choices": ["the second image", "the third image"], "answer": answer, "explanation": "",
                         "prompt": f"{question}\nSelect from the following choices.\n(A) the second image\n"
                                   "(B) the third image"})
        (root / task).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / task / "val-00000-of-00001.parquet")
    return root


def visual_genome(root: Path) -> Path:
    """Visual Genome v1.4: objects.json, image_data.json (the url names VG_100K or VG_100K_2); eight classes of
    ten objects each over six images, so that the seen / unseen split has labels on both sides."""
    names = ("dog", "cat", "horse", "cow", "car", "bus", "truck", "train")
    rng = np.random.RandomState(0)
    objects: dict[int, list] = {image_id: [] for image_id in range(1, 7)}
    for k, name in enumerate(n for n in names for _ in range(10)):
        x, y = int(rng.randint(0, 50)), int(rng.randint(0, 34))
        objects[1 + k % 6].append({"object_id": 1000 + k, "x": x, "y": y, "w": 12, "h": 12, "names": [name],
                                   "synsets": [f"{name}.n.01"], "merged_object_ids": []})
    image_data = []
    for image_id in range(1, 7):
        url = f"https://cs.stanford.edu/people/rak248/VG_100K/{image_id}.jpg"
        _image(root / "VG_100K" / f"{image_id}.jpg", 64, 48, seed=image_id)
        image_data.append({"image_id": image_id, "width": 64, "height": 48, "url": url, "coco_id": None,
                           "flickr_id": None})
    (root / "image_data.json").write_text(json.dumps(image_data))
    (root / "objects.json").write_text(json.dumps([{"image_id": i, "objects": objects[i], "image_url": image_data[i - 1]["url"]}
                                                   for i in range(1, 7)]))
    return root


def build_all(root: Path) -> dict[str, Path]:
    """Every miniature data set under `root`, by the name recipes give it."""
    return {"coco": coco(root / "coco"),
            "spair": spair(root / "SPair-71k"), "davis": davis(root / "DAVIS"), "msrc": msrc(root / "MSRC"),
            "pascal5i": pascal5i(root / "VOC2012"), "refcoco": refcoco(root / "refer/data/refcoco"),
            "pope": pope(root / "POPE"), "mme": mme(root / "MME_Benchmark_release_version"),
            "blink": blink(root / "BLINK"),
            "visual-genome": visual_genome(root / "VG")}


def coco(root: Path) -> Path:
    """COCO 2017: annotations/instances_val2017.json and captions_val2017.json, val2017/*.jpg. Six images, each with
    one car of 40 x 40 px (1,600 px²: Neo et al.'s polling selection); the first is 200 x 160 with a dog of
    150 x 150 px too (22,500 px²: their logit-lens range), the others 64 x 64; polygon segmentations, two captions
    each."""
    categories = [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 3, "name": "car", "supercategory": "vehicle"}]
    images, annotations, captions = [], [], []
    for k in range(6):
        name = f"{k + 1:012d}.jpg"
        width, height = (200, 160) if k == 0 else (64, 64)
        _image(root / "val2017" / name, width, height, seed=10 + k)
        images.append({"id": k + 1, "file_name": name, "width": width, "height": height})
        boxes = [(3, 4 + 3 * k, 10, 40, 40)] + ([(18, 48, 5, 150, 150)] if k == 0 else [])
        for category, x, y, w, h in boxes:
            annotations.append({"id": len(annotations) + 1, "image_id": k + 1, "category_id": category, "iscrowd": 0,
                                "bbox": [x, y, w, h], "area": w * h,
                                "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]})
        for text in ("a car beside a dog", "a dog and a small car"):
            captions.append({"id": len(captions) + 1, "image_id": k + 1, "caption": text})
    (root / "annotations").mkdir(parents=True)
    (root / "annotations/instances_val2017.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    (root / "annotations/captions_val2017.json").write_text(json.dumps({"images": images, "annotations": captions}))
    return root
