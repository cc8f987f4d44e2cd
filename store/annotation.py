"""The sample-annotation contract: what a dataset reader may put in a record's annotation, and what analyses
and interventions read back from the store's `annotation` field (one JSON object per sample).

Every key is optional; a reader writes the ones its data set has, with these meanings (pixels are those of
the original image file, x to the right, y down):

    image_id       str | int        the data set's own id of the (first) image
    file_name      str              the image's path relative to the data set root
    captions       [str]            reference captions of the image (COCO captions, hand-written captions)
    categories     [str]            the labels present in the image (sorted)
    objects        [Object]         annotated instances of image 0 (see `Object`)
    object         Object           the one instance a sample is about (`--samples annotations`)
    label          str              the label of a text-only sample (`--samples categories`), or of the image
    category       str              the category of a pair / trial / video (SPair, BLINK, DAVIS)
    keypoints      [[[x, y] | None]]  per image, matching keypoints (None: not visible); pairs: source, target
    keypoint_names [str]            the name of each keypoint, in the order of every image's list (e.g. "nose")
    bboxes         [[x1, y1, x2, y2]]   per image, the box the keypoints belong to (PCK's normaliser)
    masks          str | [str]      a label-id mask file (0 = background, k = object k), or one per image
                                    (decoded by `store.masks.read_label_mask`: PNG indices, RGB colours, SBD .mat)
    mask_labels    {str: str}       the label of each id of `masks` (id as a string: label), when ids stand for
                                    classes (VOC class ids, a co-segmentation set's foreground); ids not listed
                                    belong to no label (VOC's 255 border)
    video, frame   str, int         the video a single-frame record belongs to, and its index in it
    answer         str | int        the expected answer: a VQA answer string, or for choice trials the 1-based
                                    index in `images` of the candidate that matches image 0
    choices        [str]            the options of a multiple-choice question, in order
    question_id    str | int        the data set's own id of a question
    subset         str              the named subset (`--subset`) a record belongs to: a POPE setting, an MME
                                    subtask, a BLINK or CV-Bench task, Visual Genome's seen / unseen labels
    source         str              the data set a benchmark question's image comes from, where the benchmark
                                    scores per source (CV-Bench: ADE20K, COCO, Omni3D)
    next_token_id  int              with `--visual-prefix`: the token the model should predict next (the label)

Objects carry `id`, `label`, `box` ([x1, y1, x2, y2] pixel corners), and may carry `iscrowd` and
`segmentation` (COCO polygons or RLE, in image-0 pixels; decoded by `store.masks.segmentation_mask`). Readers
of new data sets keep to these names, so that every analysis finds the same thing under the same key; anything
else a manifest line holds is kept as it is.
"""

from __future__ import annotations

import json
from typing import Any, NotRequired, TypedDict

IMAGE_ID = "image_id"
FILE_NAME = "file_name"
CAPTIONS = "captions"
CATEGORIES = "categories"
OBJECTS = "objects"
OBJECT = "object"
LABEL = "label"
CATEGORY = "category"
KEYPOINTS = "keypoints"
KEYPOINT_NAMES = "keypoint_names"
BBOXES = "bboxes"
MASKS = "masks"
MASK_LABELS = "mask_labels"
VIDEO = "video"
FRAME = "frame"
ANSWER = "answer"
CHOICES = "choices"
QUESTION_ID = "question_id"
SUBSET = "subset"
SOURCE = "source"
NEXT_TOKEN_ID = "next_token_id"

# keys of one object
OBJECT_ID = "id"
BOX = "box"
ISCROWD = "iscrowd"
SEGMENTATION = "segmentation"


class Object(TypedDict):
    """One annotated instance of a sample's first image."""

    id: int | str
    label: str
    box: list[float]  # x1, y1, x2, y2 in pixels
    iscrowd: NotRequired[int]
    segmentation: NotRequired[Any]  # COCO polygons [[x, y, ...], ...] or RLE {"size", "counts"}


def parse(text: str) -> dict[str, Any]:
    """A sample's annotation from the store's JSON string (empty for samples captured without one)."""
    return json.loads(text or "{}")


def dumps(annotation: dict[str, Any]) -> str:
    """The JSON string stored for `annotation` (keys sorted, so equal annotations store equal bytes)."""
    return json.dumps(annotation, sort_keys=True)


def objects(annotation: dict[str, Any]) -> list[Object]:
    """The annotated instances of image 0."""
    return list(annotation.get(OBJECTS, []))


def object_labels(annotation: dict[str, Any]) -> list[str]:
    """Sorted distinct labels of the annotated instances."""
    return sorted({obj[LABEL] for obj in objects(annotation)})
