"""Training and held-out examples for the toy model, drawn from synthetic-coco scenes.

Each scene (the synthetic-coco generator: 1-3 coloured shapes on a textured background, image sizes as in
the demo dataset) gives one example of one task, in the exact prompt formats the tools use:
- caption: the chat template with a caption instruction ("Describe the image." or a Wei prompt), answered by
  the scene's objects listed left to right, e.g. "a red circle and a blue square on a plain background.";
- poll: "Is there a {shape} in the image? Answer yes or no." (POPE wording), answered "Yes" or "No", half
  present, half absent;
- bbox: Jung et al.'s raw prompt `<image> bbox:[x1,y1,x2,y2] shape\\n` for one object, the shape as answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from capture.datasets.synthetic_coco import CATEGORIES, COLOURS, SIZES, SceneObject, draw_scene, scene_caption
from capture.prompts import DEFAULT_PROMPT, NORMAL_PROMPTS, POLL_QUESTION, bbox_text

TASKS = ("caption", "poll", "bbox")
CAPTION_PROMPTS = (DEFAULT_PROMPT, *NORMAL_PROMPTS)
TRAIN_SEED = 1
HELD_OUT_SEED = 2
MAX_SIDE_PX = 128  # scenes are drawn at the demo's aspect ratios, scaled down to the toy's 128-pixel tile


@dataclass(frozen=True)
class Example:
    """One training or evaluation example: an image, the user text (chat) or the raw prompt text after the
    image (bbox), and the answer the model must produce."""

    task: str
    image: Image.Image
    objects: tuple[SceneObject, ...]
    question: str
    answer: str
    present: bool | None = None  # poll: whether the asked shape is in the image


def caption_of(objects: list[SceneObject] | tuple[SceneObject, ...]) -> str:
    """The caption the toy learns: objects listed left to right (by the centre of their vertices)."""
    return scene_caption(sorted(objects, key=lambda o: np.mean([x for x, _ in o.polygon])))


def box_of(obj: SceneObject) -> list[float]:
    """x1, y1, x2, y2 pixel box of an object's polygon."""
    xs, ys = [x for x, _ in obj.polygon], [y for _, y in obj.polygon]
    return [min(xs), min(ys), max(xs), max(ys)]


def patch_labels(example: Example, tile_px: int, patch_px: int) -> np.ndarray:
    """(patches, 2, 5) float: for each patch of the base view (the image squashed to a `tile_px` square, patches
    row-major), the fraction of its pixels showing background or each shape (`[:, 0]`: background, then
    CATEGORIES), and background or each colour (`[:, 1]`: background, then COLOURS). Objects are drawn in
    order, so an occluded part belongs to the object on top."""
    width, height = example.image.size
    per_patch = []
    for names, name_of in ((CATEGORIES, lambda o: o.category), (list(COLOURS), lambda o: o.colour)):
        canvas = Image.new("L", (tile_px, tile_px), 0)
        draw = ImageDraw.Draw(canvas)
        for obj in example.objects:
            draw.polygon([(x * tile_px / width, y * tile_px / height) for x, y in obj.polygon],
                         fill=1 + names.index(name_of(obj)))
        side = tile_px // patch_px
        pixels = np.asarray(canvas).reshape(side, patch_px, side, patch_px).transpose(0, 2, 1, 3)
        pixels = pixels.reshape(side * side, patch_px * patch_px)
        per_patch.append(np.stack([(pixels == k).mean(axis=1) for k in range(1 + len(names))], axis=1))
    return np.stack(per_patch, axis=1)


def make_examples(n_scenes: int, seed: int) -> list[Example]:
    """`n_scenes` examples, tasks in turn (caption, poll yes, bbox, poll no, ...); the same arguments give the
    same examples."""
    rng = np.random.RandomState(seed)
    examples = []
    for index in range(n_scenes):
        width, height = SIZES[rng.randint(len(SIZES))]
        scale = min(1.0, MAX_SIDE_PX / max(width, height))
        width, height = round(width * scale), round(height * scale)
        image, objects = draw_scene(rng, width, height)
        task = TASKS[index % len(TASKS)]
        if task == "caption":
            prompt = CAPTION_PROMPTS[rng.randint(len(CAPTION_PROMPTS))]
            examples.append(Example(task, image, tuple(objects), prompt, caption_of(objects)))
        elif task == "poll":
            present = sorted({o.category for o in objects})
            absent = [c for c in CATEGORIES if c not in present]
            ask_present = (index // len(TASKS)) % 2 == 0 or not absent
            pool = present if ask_present else absent
            shape = pool[rng.randint(len(pool))]
            examples.append(Example(task, image, tuple(objects), POLL_QUESTION.format(object=shape),
                                    "Yes" if ask_present else "No", ask_present))
        else:
            # the topmost object is never occluded, so its box always shows its shape
            obj = objects[-1]
            before, after = bbox_text(box_of(obj), width, height, obj.category)
            examples.append(Example(task, image, tuple(objects), before, after))
    return examples


def corpus(examples: list[Example]) -> list[str]:
    """Every text the toy reads or writes, for training its tokenizer (plus every label and colour word)."""
    words = [f" {w}" for w in (*CATEGORIES, *COLOURS)] + [w for w in (*CATEGORIES, *COLOURS)]
    return [*CAPTION_PROMPTS, "Yes", "No", *words, *(e.question for e in examples), *(e.answer for e in examples)]
