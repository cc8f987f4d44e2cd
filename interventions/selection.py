"""Neo et al.'s image selection (§3, "Dataset"): simpler images, and a control for hallucination.

1. An image is kept for an object when it holds fewer than 4 annotated objects, exactly one instance of that
   object's label, and that instance covers 1,000-2,000 px² (its mask's area where the data has a mask, else its
   box's area; pixels of the original image).
2. Hallucination control: the object is kept only when the unintervened model identifies it in the image and
   fails to once the object's pixels are replaced by noise (for polling: answers Yes, then No).
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from capture.datasets import Dataset, load_image
from capture.loading import LoadedModel
from capture.prompts import CHAT, POLL_QUESTION, build_prompt
from capture.samples import prepare_sample
from interventions import regions
from interventions.evaluate import answer_token_ids, forward_logits
from interventions.spec import InterventionSpec
from store import annotation as ann
from store.schema import SAMPLE_ID


@dataclass(frozen=True)
class Selection:
    """Neo et al.'s criteria: object area in [min_area, max_area] px², at most `max_objects` annotated objects."""

    min_area: float = 1000.0
    max_area: float = 2000.0
    max_objects: int = 3
    region: str = regions.AUTO

    def as_dict(self) -> dict[str, Any]:
        return {"min_area": self.min_area, "max_area": self.max_area, "max_objects": self.max_objects,
                "object_region": self.region}


def image_size(path) -> tuple[int, int]:
    """(height, width) of an image file, read from its header."""
    with Image.open(path) as image:
        return image.height, image.width


def targets(dataset: Dataset, selection: Selection = Selection()) -> list[tuple[int, str]]:
    """(record index, label) of every object that passes Neo et al.'s criteria, in record order."""
    chosen = []
    for index, record in enumerate(dataset.records):
        objects = ann.objects(record.annotation)
        if len(record.image_paths) != 1 or not objects or len(objects) > selection.max_objects:
            continue
        counts = Counter(obj[ann.LABEL] for obj in objects)
        size = image_size(record.image_paths[0])
        for label in sorted(label for label, count in counts.items() if count == 1):
            region = regions.object_region(record.annotation, label, size, selection.region)
            if region is not None and selection.min_area <= region.area <= selection.max_area:
                chosen.append((index, label))
    return chosen


def noised(image: Image.Image, pixels: np.ndarray, seed: int, sample_id: str) -> Image.Image:
    """`image` with the True `pixels` replaced by uniform RGB noise, seeded by the run's seed and the sample id."""
    array = np.asarray(image.convert("RGB")).copy()
    rng = np.random.default_rng([seed, zlib.crc32(sample_id.encode())])
    array[pixels] = rng.integers(0, 256, (int(pixels.sum()), 3), dtype=np.uint8)
    return Image.fromarray(array)


def hallucination_control(loaded: LoadedModel, dataset: Dataset, chosen: list[tuple[int, str]],
                          question: str = POLL_QUESTION, region: str = regions.AUTO,
                          seed: int = 0) -> list[dict[str, Any]]:
    """For each (record index, label): does the unintervened model answer Yes on the image and No once the object
    is noised out? One row each, `kept` when both hold."""
    yes, no = answer_token_ids(loaded)
    rows = []
    for index, label in chosen:
        record = dataset.records[index]
        image = load_image(record.image_paths[0])
        pixels = regions.object_region(record.annotation, label, (image.height, image.width), region).pixels
        prompt = build_prompt(loaded.processor, CHAT, question.format(object=label), 1)
        said = {}
        for version, shown in (("original", image), ("noised", noised(image, pixels, seed, record.sample_id))):
            logits = forward_logits(loaded, prepare_sample(loaded, prompt, [shown], record.annotation),
                                    InterventionSpec())[-1]
            said[version] = bool(logits[yes] > logits[no])
        rows.append({SAMPLE_ID: record.sample_id, "index": index, "object": label, "area": int(pixels.sum()),
                     "yes_on_image": said["original"], "yes_when_noised": said["noised"],
                     "kept": said["original"] and not said["noised"]})
    return rows
