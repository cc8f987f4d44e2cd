"""The trained toy model (built once per test cache, a few minutes): held-out accuracy and the logit-lens signal.

Thresholds are set below the values measured on the default recipe (`python -m toy train`, 2 CPU cores):
caption word accuracy 62.4%, box naming 69.0%; logit-lens object-token hit rate 1.1% at stream 0 and 3.8% at
the last stream, against 0.26% chance (one token of 384). Polling accuracy is not asserted: it stays at chance (see the README).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capture.datasets.synthetic_coco import CATEGORIES
from toy.model import BUILD_FILE, TOY_VERSION


@pytest.fixture(scope="session")
def toy_dir(cache_home: Path) -> Path:
    from toy.model import ensure_toy_model

    return ensure_toy_model("toy-llava-ov")


def test_held_out_accuracy_is_well_above_chance(toy_dir: Path) -> None:
    record = json.loads((toy_dir / BUILD_FILE).read_text())
    assert record["version"] == TOY_VERSION
    held_out = record["held_out"]
    assert held_out["caption_words"] >= 300 and held_out["box_prompts"] >= 90
    assert held_out["caption_word_accuracy"] >= 50.0  # chance 25%
    assert held_out["box_naming_accuracy"] >= 50.0  # chance 25%


def test_logit_lens_names_object_shapes_more_in_later_layers(toy_dir: Path, synthetic_root: Path, tmp_path: Path) -> None:
    from analyses import lens as logit_lens
    from analyses.ground_truth import object_masks
    from capture.run import CaptureOptions, run_capture
    from store import reader

    out = tmp_path / "toy.zarr"
    run_capture(CaptureOptions(model="toy-llava-ov", dataset="synthetic-coco", data_root=synthetic_root, out=out,
                               progress=False))
    ds = reader.open(out)
    lens = logit_lens.Lens.from_store(reader.open_lens(out), ds.attrs["capture_config"]["compute_dtype"])
    samples = list(range(ds.sizes["sample"]))
    decoded = logit_lens.image_top_tokens(ds, lens, samples)
    hits = logit_lens.object_hit_rate(decoded, lens, {s: object_masks(ds, s) for s in samples}, ds.stream.values)
    rate = hits.hit_rate.values
    # chance: the share of the vocabulary a label matches, if the top token were drawn uniformly
    chance = np.mean([np.mean([logit_lens.matches(t, c) for t in lens.vocabulary]) for c in CATEGORIES])
    assert hits.attrs["n_object_tokens"] > 200
    assert rate[-1] >= 2 * rate[0]
    assert rate[-1] >= 4 * chance
