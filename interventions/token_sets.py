"""Named token sets of one input sequence, from its token table and the sample's annotation (see `spec`)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from store import annotation as ann
from store.schema import GRID_COL, GRID_ROW, IMAGE_INDEX, IMAGE_PART, KIND, TokenKind, TokenSet
from store.token_table import TokenTable

RANDOM = "random:"  # random:SET, the control of SET


def image_positions(table: TokenTable) -> np.ndarray:
    """Sequence positions of image tokens (newline tokens included), in order."""
    return np.flatnonzero(np.isin(table.fields[KIND], [TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE]))


def kept_positions(table: TokenTable, keep_image_tokens: int | None) -> np.ndarray:
    """Positions that stay in the sequence when only the first `keep_image_tokens` image tokens are kept."""
    if keep_image_tokens is None:
        return np.arange(len(table))
    dropped = image_positions(table)[keep_image_tokens:]
    return np.setdiff1d(np.arange(len(table)), dropped)


def resolve(name: str, table: TokenTable, annotation: dict[str, Any], image_sizes: list[tuple[int, int]],
            label: str | None = None) -> np.ndarray:
    """Sorted sequence positions of token set `name`. "object" sets use the boxes of `label`'s objects (every
    object when `label` is None) in image 0; `image_sizes` are (height, width) per image. "random:SET" draws as many
    image tokens as SET holds from those outside it (fewer when too few remain), seeded by the sequence."""
    kind = table.fields[KIND]
    image = image_positions(table)
    if name.startswith(RANDOM):
        chosen = resolve(name.removeprefix(RANDOM), table, annotation, image_sizes, label)
        pool = np.setdiff1d(image[kind[image] == TokenKind.IMAGE], chosen)
        rng = np.random.default_rng([len(table), len(chosen)])  # the same sequence and count draw the same tokens
        return np.sort(rng.choice(pool, size=min(len(chosen), len(pool)), replace=False))
    text = np.flatnonzero(~np.isin(kind, [TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE, TokenKind.PAD]))
    if name == TokenSet.IMAGE:
        return image
    if name == TokenSet.TEXT:
        return text
    if name == "prompt_text":
        return text[text < image[0]] if len(image) else text
    if name == "question":
        return text[text > image[-1]] if len(image) else text
    if name == TokenSet.LAST:
        return np.array([len(table) - 1])
    if name == TokenSet.ALL:
        return np.arange(len(table))
    interval = re.fullmatch(r"image\[(\d*):(\d*)\]", name)
    if interval:
        start, stop = (int(v) if v else None for v in interval.groups())
        return image[start:stop]
    if name == "non-object":
        return np.setdiff1d(image[kind[image] == TokenKind.IMAGE], object_tokens(table, annotation, image_sizes, label, 1))
    buffer = int(name.split("+")[1]) if "+" in name else 0
    return object_tokens(table, annotation, image_sizes, label, buffer)


def object_tokens(table: TokenTable, annotation: dict[str, Any], image_sizes: list[tuple[int, int]],
                  label: str | None, buffer: int = 0) -> np.ndarray:
    """Image-0 tokens whose footprint overlaps a box of the object(s), grown by `buffer` grid cells (Neo et al.)."""
    objects = [o for o in ann.objects(annotation) if label is None or o[ann.LABEL] == label]
    fields, box = table.fields, table.box
    mine = (fields[KIND] == TokenKind.IMAGE) & (fields[IMAGE_INDEX] == 0)
    if not objects or not mine.any():
        return np.array([], dtype=np.int64)
    height, width = image_sizes[0]
    hit = np.zeros(len(table), bool)
    for obj in objects:
        x1, y1, x2, y2 = np.asarray(obj[ann.BOX], np.float64) / [width, height, width, height]
        hit |= mine & (box[:, 0] < x2) & (box[:, 2] > x1) & (box[:, 1] < y2) & (box[:, 3] > y1)
    if buffer:
        rows, cols, parts = fields[GRID_ROW], fields[GRID_COL], fields[IMAGE_PART]
        grown = hit.copy()
        for position in np.flatnonzero(hit):
            near = (mine & (parts == parts[position]) & (np.abs(rows - rows[position]) <= buffer)
                    & (np.abs(cols - cols[position]) <= buffer))
            grown |= near
        hit = grown
    return np.flatnonzero(hit)
