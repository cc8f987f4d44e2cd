"""Token sets on hand-built token tables: object tokens from the mask (or the box), Neo et al.'s buffer, the last
row, register tokens, and random tokens seeded per sample."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from analyses.tokens import ImageTokens, labels_to_tokens
from interventions import regions, token_sets
from interventions.apply import plan_sample
from interventions.spec import parse_spec
from interventions.token_sets import Rules, Sample
from store.schema import GRID_COL, GRID_ROW, IMAGE_INDEX, IMAGE_PART, KIND, ImagePart, TokenKind
from store.token_table import TokenTable

SIZE = 40  # a 40 x 40 px image on a 4 x 4 grid of 10 px tokens


def grid_table(text_before: int = 2, text_after: int = 3, newline: bool = False) -> TokenTable:
    """Text, a 4 x 4 base view (row-major, each token 10 x 10 px), optionally a one-row grid view with a newline
    token, then text."""
    rows = [("text", -1, -1, -1)] * text_before
    rows += [("image", ImagePart.BASE, r, c) for r in range(4) for c in range(4)]
    if newline:
        rows += [("image", ImagePart.GRID, 0, c) for c in range(4)] + [("newline", ImagePart.GRID, 0, 4)]
    rows += [("text", -1, -1, -1)] * text_after
    table = TokenTable.empty(len(rows))
    kinds = {"text": TokenKind.TEXT, "image": TokenKind.IMAGE, "newline": TokenKind.IMAGE_NEWLINE}
    for i, (kind, part, row, col) in enumerate(rows):
        table.fields[KIND][i], table.fields[IMAGE_PART][i] = kinds[kind], part
        table.fields[GRID_ROW][i], table.fields[GRID_COL][i] = row, col
        if kind != "text":
            table.fields[IMAGE_INDEX][i] = 0
        if kind == "image":
            rows_in_view = 4 if part == ImagePart.BASE else 1
            table.box[i] = [col / 4, row / rows_in_view, (col + 1) / 4, (row + 1) / rows_in_view]
    return table


# a right triangle with corners (0, 0), (19, 0), (0, 19): its pixels lie in the tokens (0,0), (0,1), (1,0) only,
# while its box [0, 0, 19, 19] touches those and (1, 1)
TRIANGLE = {"id": 1, "label": "cat", "box": [0, 0, 19, 19], "segmentation": [[0, 0, 19, 0, 0, 19]]}
BASE_START = 2  # position of base token (0, 0) in grid_table


def base(row: int, col: int) -> int:
    return BASE_START + 4 * row + col


def test_object_tokens_follow_the_mask_where_the_data_has_one():
    sample = Sample(grid_table(), {"objects": [TRIANGLE]}, [(SIZE, SIZE)], "cat")
    assert token_sets.resolve("object", sample).tolist() == [base(0, 0), base(0, 1), base(1, 0)]
    boxed = token_sets.resolve("object", sample, Rules(object_region=regions.BOX))
    assert boxed.tolist() == [base(0, 0), base(0, 1), base(1, 0), base(1, 1)]
    without_mask = Sample(grid_table(), {"objects": [{k: v for k, v in TRIANGLE.items() if k != "segmentation"}]},
                          [(SIZE, SIZE)], "cat")
    assert np.array_equal(token_sets.resolve("object", without_mask), boxed)  # auto falls back to the box
    with pytest.raises(regions.RegionError, match="has no mask"):
        token_sets.resolve("object", without_mask, Rules(object_region=regions.MASK))
    plan, _ = plan_sample(parse_spec({"knockout": [{"queries": "last", "keys": "object", "layers": [0]}]}), sample)
    assert plan.object_region == "mask" and plan.n_tokens == 3


def test_a_manifest_mask_file_is_the_kth_objects_mask(tmp_path):
    ids = np.zeros((SIZE, SIZE), np.uint8)
    ids[25:35, 25:35] = 2  # the second object: inside token (2, 2) and (3, 3)'s corner
    Image.fromarray(ids, mode="L").save(tmp_path / "mask.png")
    objects = [{"id": 0, "label": "a", "box": [0, 0, 5, 5]}, {"id": 1, "label": "b", "box": [20, 20, 39, 39]}]
    sample = Sample(grid_table(), {"objects": objects, "masks": str(tmp_path / "mask.png")}, [(SIZE, SIZE)], "b")
    assert token_sets.resolve("object", sample).tolist() == [base(2, 2), base(2, 3), base(3, 2), base(3, 3)]
    assert regions.object_region(sample.annotation, "b", (SIZE, SIZE)).area == 100


def test_the_buffer_adds_the_neighbouring_grid_cells():
    sample = Sample(grid_table(), {"objects": [{"id": 1, "label": "dot", "box": [31, 31, 39, 39]}]}, [(SIZE, SIZE)])
    assert token_sets.resolve("object", sample).tolist() == [base(3, 3)]
    assert token_sets.resolve("object+1", sample).tolist() == [base(2, 2), base(2, 3), base(3, 2), base(3, 3)]
    assert len(token_sets.resolve("object+2", sample)) == 9
    non_object = token_sets.resolve("non-object", sample)  # the image tokens outside object+1
    assert len(non_object) == 12 and base(2, 2) not in non_object


def test_covers_is_the_logit_lens_rule():
    """One definition of object tokens: a footprint that touches a mask pixel, as labels_to_tokens counts it."""
    rng = np.random.default_rng(0)
    corners = np.sort(rng.uniform(0, 1, (50, 2, 2)), axis=1)
    boxes = np.stack([corners[:, 0, 0], corners[:, 0, 1], corners[:, 1, 0], corners[:, 1, 1]], axis=1)
    pixels = rng.uniform(size=(37, 53)) > 0.97
    tokens = ImageTokens(0, 0, 0, np.arange(50), np.zeros((50, 2), int), boxes, pixels.shape)
    expected = labels_to_tokens(tokens, pixels.astype(np.int64), 2)[:, 1] > 0
    assert np.array_equal(token_sets.covers(boxes, pixels), expected) and expected.any() and not expected.all()


def test_last_row_and_the_assessed_views():
    table = grid_table(newline=True)
    sample = Sample(table, {}, [(SIZE, SIZE)])
    grid_row = list(range(BASE_START + 16, BASE_START + 21))  # the grid view's only row and its newline token
    assert token_sets.resolve("last-row", sample).tolist() == grid_row
    assert token_sets.resolve("non-last-row", sample).tolist() == list(range(BASE_START, BASE_START + 16))
    assert token_sets.resolve("image:base", sample).tolist() == list(range(BASE_START, BASE_START + 16))
    assert token_sets.resolve("image:grid", sample).tolist() == grid_row[:4]  # no newline token
    assert token_sets.resolve("image:patches", sample).tolist() == list(range(BASE_START, BASE_START + 20))
    only_base = Sample(grid_table(), {}, [(SIZE, SIZE)])
    assert token_sets.resolve("last-row", only_base).tolist() == [base(3, c) for c in range(4)]


def test_register_tokens_exceed_the_mean_norm_by_two_std():
    table = grid_table()
    norms = np.full(len(table), 100.0)  # text tokens do not count
    image_norms = np.ones(16)
    image_norms[[3, 9]] = [12.0, 5.0]
    norms[BASE_START:BASE_START + 16] = image_norms
    # mean = (14 + 12 + 5) / 16 = 1.9375; population std = sqrt(mean of squares - mean^2)
    mean = (14 + 12 + 5) / 16
    std = np.sqrt((14 + 144 + 25) / 16 - mean**2)
    assert 5.0 < mean + 2 * std < 12.0  # so only the norm-12 token is a register token
    sample = Sample(table, {}, [(SIZE, SIZE)], norms=norms)
    assert token_sets.resolve("register", sample).tolist() == [base(0, 3)]
    with pytest.raises(token_sets.TokenSetError, match="norms"):
        token_sets.resolve("register", Sample(table, {}, [(SIZE, SIZE)]))


def test_random_tokens_are_seeded_by_sample_id_and_run_seed():
    """Two images of the same sequence length get different random tokens (the draw used to depend on the length
    and count only); the same id, seed and draw give the same tokens."""
    annotation = {"objects": [{"id": 1, "label": "dot", "box": [0, 0, 9, 9]}]}
    first, second = (Sample(grid_table(), annotation, [(SIZE, SIZE)], sample_id=i) for i in ("img-1", "img-2"))
    draws = {(s.sample_id, seed): tuple(token_sets.resolve("random:object+1", s, Rules(seed=seed)))
             for s in (first, second) for seed in range(8)}
    assert len(set(draws.values())) > 8  # 16 (id, seed) pairs, 12 candidates choose 4: repeats would be chance
    assert draws[("img-1", 0)] == tuple(token_sets.resolve("random:object+1", first, Rules(seed=0)))
    assert draws[("img-1", 0)] != tuple(token_sets.resolve("random:object+1", first, Rules(seed=0, draw=1)))
    assert all(len(d) == 4 and not {base(0, 0), base(0, 1), base(1, 0), base(1, 1)} & set(d) for d in draws.values())
