"""Named token sets of one input sequence, from its token table and the sample's annotation (see `spec`).

Object tokens are the image-0 tokens whose footprint covers a pixel of the object's region (`regions`: the
mask where the data has one, the box otherwise), the same rule as the logit lens's object tokens
(`analyses.tokens.labels_to_tokens` > 0); `object+N` grows them by N grid cells (Neo et al.'s buffer).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy import ndimage

from interventions import regions
from store.schema import GRID_COL, GRID_ROW, IMAGE_INDEX, IMAGE_PART, KIND, ImagePart, TokenKind, TokenSet
from store.token_table import TokenTable

RANDOM = "random:"  # random:SET, the control of SET
REGISTER = "register"  # image tokens whose input-embedding norm exceeds the sample's mean + 2 std
REGISTER_STDS = 2.0  # Neo et al. §3, the criterion of `analyses token-norms`
NON_OBJECT_BUFFER = 1  # `non-object`: image tokens outside object+1 (Neo et al.'s I-(O+1))
VIEWS = {"base": ImagePart.BASE, "grid": ImagePart.GRID}  # image:base, image:grid (image:patches: every view)
IMAGE_KINDS = [TokenKind.IMAGE, TokenKind.IMAGE_NEWLINE]


class TokenSetError(ValueError):
    """A token set that cannot be resolved for a sample (one line)."""


@dataclass(frozen=True)
class Sample:
    """What token sets are resolved on: one sequence's token table, its annotation, image sizes (height, width),
    the object label asked about (None: every object), the sample id (seeds random sets) and, for `register`,
    the L2 norm of every position's input embedding."""

    table: TokenTable
    annotation: dict[str, Any]
    image_sizes: list[tuple[int, int]]
    label: str | None = None
    sample_id: str = ""
    norms: np.ndarray | None = None

    def select(self, positions: np.ndarray) -> Sample:
        """The sample restricted to `positions` of its sequence (a truncated input)."""
        norms = None if self.norms is None else self.norms[positions]
        return replace(self, table=self.table.select(positions), norms=norms)


@dataclass(frozen=True)
class Rules:
    """How a spec resolves its sets: the object region (regions.AUTO / MASK / BOX) and the seed of random sets
    (the run's seed and the draw, combined with the sample id)."""

    object_region: str = regions.AUTO
    seed: int = 0
    draw: int = 0


def image_positions(table: TokenTable) -> np.ndarray:
    """Sequence positions of image tokens (newline tokens included), in order."""
    return np.flatnonzero(np.isin(table.fields[KIND], IMAGE_KINDS))


def kept_positions(table: TokenTable, keep_image_tokens: int | None) -> np.ndarray:
    """Positions that stay in the sequence when only the first `keep_image_tokens` image tokens are kept."""
    if keep_image_tokens is None:
        return np.arange(len(table))
    dropped = image_positions(table)[keep_image_tokens:]
    return np.setdiff1d(np.arange(len(table)), dropped)


def resolve(name: str, sample: Sample, rules: Rules = Rules()) -> np.ndarray:
    """Sorted sequence positions of token set `name` (see `spec` for the names)."""
    table, kind = sample.table, sample.table.fields[KIND]
    image = image_positions(table)
    if name.startswith(RANDOM):
        return random_tokens(resolve(name.removeprefix(RANDOM), sample, rules), sample, rules)
    fixed = _sequence_set(name, table, image)
    if fixed is not None:
        return fixed
    if name.startswith("image:"):
        view = name.split(":")[1]
        return np.flatnonzero(_patches0(table) & ((table.fields[IMAGE_PART] == VIEWS[view]) if view in VIEWS else True))
    if name == "last-row":
        return last_row(table)
    if name == "non-last-row":
        return np.setdiff1d(np.flatnonzero(_visual0(table)), last_row(table))
    if name == REGISTER:
        return register_tokens(sample)
    if name == "non-object":
        patches = image[kind[image] == TokenKind.IMAGE]
        return np.setdiff1d(patches, object_tokens(sample, rules.object_region, NON_OBJECT_BUFFER))
    buffer = int(name.split("+")[1]) if "+" in name else 0
    return object_tokens(sample, rules.object_region, buffer)


def _sequence_set(name: str, table: TokenTable, image: np.ndarray) -> np.ndarray | None:
    """The sets defined by the sequence alone (None for any other name)."""
    text = np.flatnonzero(~np.isin(table.fields[KIND], [*IMAGE_KINDS, TokenKind.PAD]))
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
    return None


def _visual0(table: TokenTable) -> np.ndarray:
    """(seq,) bool: the tokens of image 0, newline tokens included."""
    return np.isin(table.fields[KIND], IMAGE_KINDS) & (table.fields[IMAGE_INDEX] == 0)


def _patches0(table: TokenTable) -> np.ndarray:
    """(seq,) bool: the patch tokens (newlines excluded) of image 0."""
    return (table.fields[KIND] == TokenKind.IMAGE) & (table.fields[IMAGE_INDEX] == 0)


def random_tokens(chosen: np.ndarray, sample: Sample, rules: Rules) -> np.ndarray:
    """As many image tokens as `chosen` holds (fewer when too few remain), drawn from the image tokens outside it;
    seeded by the run's seed, the draw and the sample id, so that every sample and draw gets its own tokens."""
    kind = sample.table.fields[KIND]
    pool = np.setdiff1d(np.flatnonzero(kind == TokenKind.IMAGE), chosen)
    rng = np.random.default_rng([rules.seed, rules.draw, zlib.crc32(sample.sample_id.encode())])
    return np.sort(rng.choice(pool, size=min(len(chosen), len(pool)), replace=False))


def last_row(table: TokenTable) -> np.ndarray:
    """The last row of image 0's visual tokens (its newline token included): the last grid row of the view that
    comes last in the sequence (Neo et al.'s "last row of visual tokens")."""
    mine = np.flatnonzero(_visual0(table))
    if not len(mine):
        return mine
    part = table.fields[IMAGE_PART][mine[-1]]
    view = mine[table.fields[IMAGE_PART][mine] == part]
    rows = table.fields[GRID_ROW][view]
    return view[rows == rows.max()]


def register_tokens(sample: Sample) -> np.ndarray:
    """Image tokens whose input-embedding norm exceeds the mean + 2 std (population) of the sample's image tokens."""
    if sample.norms is None:
        raise TokenSetError("the register token set needs the input-embedding norms of the sample")
    patches = np.flatnonzero(sample.table.fields[KIND] == TokenKind.IMAGE)
    norms = sample.norms[patches]
    return patches[norms > norms.mean() + REGISTER_STDS * norms.std()] if len(patches) else patches


def object_tokens(sample: Sample, region: str = regions.AUTO, buffer: int = 0) -> np.ndarray:
    """Image-0 tokens whose footprint covers a pixel of the object's region (`sample.label`'s instances, every
    object when None), grown by `buffer` grid cells within their view (Neo et al.)."""
    table = sample.table
    mine = _patches0(table)
    if not mine.any() or not sample.image_sizes:
        return np.array([], dtype=np.int64)
    found = regions.object_region(sample.annotation, sample.label, sample.image_sizes[0], region)
    if found is None:
        return np.array([], dtype=np.int64)
    hit = np.zeros(len(table), bool)
    hit[mine] = covers(table.box[mine], found.pixels)
    if buffer:
        hit = grow(table, mine, hit, buffer)
    return np.flatnonzero(hit)


def covers(boxes: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """(n,) bool: does each token footprint (n, 4) x0, y0, x1, y1 in [0, 1] touch a True pixel of the (H, W)
    map? The pixels a footprint touches are those of `analyses.tokens.labels_to_tokens`, summed at once from an
    integral image."""
    height, width = pixels.shape
    integral = np.zeros((height + 1, width + 1), np.int64)
    integral[1:, 1:] = pixels.astype(np.int64).cumsum(0).cumsum(1)
    boxes = np.nan_to_num(np.asarray(boxes, np.float64), nan=-1.0)
    c0, r0 = np.floor(boxes[:, 0] * width).astype(int), np.floor(boxes[:, 1] * height).astype(int)
    c1 = np.maximum(np.ceil(boxes[:, 2] * width).astype(int), c0 + 1)
    r1 = np.maximum(np.ceil(boxes[:, 3] * height).astype(int), r0 + 1)
    c0, c1 = np.clip(c0, 0, width), np.clip(c1, 0, width)
    r0, r1 = np.clip(r0, 0, height), np.clip(r1, 0, height)
    return (integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]) > 0


def grow(table: TokenTable, mine: np.ndarray, hit: np.ndarray, buffer: int) -> np.ndarray:
    """`hit` plus every token of `mine` within `buffer` rows and columns of a hit token of the same view."""
    fields = table.fields
    grown = hit.copy()
    structure = np.ones((2 * buffer + 1, 2 * buffer + 1), bool)
    for part in np.unique(fields[IMAGE_PART][mine]):
        view = np.flatnonzero(mine & (fields[IMAGE_PART] == part))
        rows, cols = fields[GRID_ROW][view].astype(int), fields[GRID_COL][view].astype(int)
        grid = np.zeros((rows.max() + 1, cols.max() + 1), bool)
        grid[rows, cols] = hit[view]
        grown[view] |= ndimage.binary_dilation(grid, structure)[rows, cols]
    return grown
