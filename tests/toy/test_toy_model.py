"""The trained toy model (built once per test cache, a few minutes): held-out accuracy and the four signals.

Thresholds sit below the values measured on the default recipe (`python -m toy train`, 2 CPU cores; see the
README's toy-model section for the commands): held-out caption words 59.8%, polling 78.7%, box naming 64.7%;
logit-lens object-token shape hit rate 20.2% at stream 0 and 22.1% at the last stream (chance 0.26%); mean Yes-No
margin on present objects 0.97, 0.44 with the object's tokens mean-ablated, 1.17 with as many random image tokens
ablated; object-to-object correspondence 0.52-0.75 per (layer, KV head) against 0.16 chance; FFN top-key label
cosine 0.452 against 0.427 for random labels (mean over layers).
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
    from toy.train import ensure_toy_model

    return ensure_toy_model("toy-llava-ov")


def capture(out: Path, **options) -> Path:
    from capture.options import CaptureOptions
    from capture.run import run_capture

    run_capture(CaptureOptions(model="toy-llava-ov", out=out, progress=False, **options))
    return out


@pytest.fixture(scope="module")
def toy_store(toy_dir: Path, synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return capture(tmp_path_factory.mktemp("toy") / "coco.zarr", dataset="synthetic-coco", data_root=synthetic_root)


def test_held_out_accuracy_is_well_above_chance(toy_dir: Path) -> None:
    record = json.loads((toy_dir / BUILD_FILE).read_text())
    assert record["version"] == TOY_VERSION
    held_out = record["held_out"]
    assert held_out["caption_words"] >= 300 and held_out["polling_questions"] >= 150 and held_out["box_prompts"] >= 150
    assert held_out["caption_word_accuracy"] >= 50.0  # chance 25%
    assert held_out["polling_accuracy"] >= 65.0  # chance 50%
    assert held_out["box_naming_accuracy"] >= 50.0  # chance 25%


def test_logit_lens_names_object_shapes_more_in_later_layers(toy_store: Path) -> None:
    from analyses import lens as logit_lens
    from analyses.ground_truth import object_masks
    from store import reader

    ds = reader.open(toy_store)
    lens = logit_lens.Lens.from_store(reader.open_lens(toy_store), ds.attrs["capture_config"]["compute_dtype"])
    samples = list(range(ds.sizes["sample"]))
    decoded = logit_lens.image_top_tokens(ds, lens, samples)
    hits = logit_lens.object_hit_rate(decoded, lens, {s: object_masks(ds, s) for s in samples}, ds.stream.values)
    rate = hits.hit_rate.values
    # chance: the share of the vocabulary a label matches, if the top token were drawn uniformly
    chance = np.mean([np.mean([logit_lens.matches(t, c) for t in lens.vocabulary]) for c in CATEGORIES])
    assert hits.attrs["n_object_tokens"] > 200
    assert rate[-1] > rate[0]
    assert rate[-1] >= 40 * chance


def test_ablating_object_tokens_lowers_polling_more_than_random_tokens(toy_dir: Path, toy_store: Path,
                                                                       synthetic_root: Path) -> None:
    from capture.datasets import open_dataset
    from capture.loading import load_model, resolve_model
    from interventions import polling
    from interventions.means import ablation_means
    from interventions.spec import parse_spec

    loaded = load_model(resolve_model("toy-llava-ov"), "fp32", "cpu")
    dataset = open_dataset("synthetic-coco", synthetic_root, None, None)
    conditions = {"none": parse_spec({"name": "none"})}
    for tokens in ("object", "random:object"):
        conditions[tokens] = parse_spec({"name": tokens, "ablate": [{"tokens": tokens, "mean_from": str(toy_store)}]})
    rows = polling.poll(loaded, dataset, conditions, ablation_means(list(conditions.values()), loaded))
    # the Yes - No margin on questions about present objects (an absent object has no tokens to ablate)
    margin = {name: np.mean([r["logit_yes"] - r["logit_no"] for r in rows if r["condition"] == name and r["present"]])
              for name in conditions}
    assert sum(r["present"] for r in rows if r["condition"] == "none") >= 18
    object_drop, random_drop = margin["none"] - margin["object"], margin["none"] - margin["random:object"]
    assert object_drop >= 0.3
    assert object_drop - random_drop >= 0.5


def test_correspondence_matches_object_tokens_to_object_tokens(toy_dir: Path, tmp_path: Path) -> None:
    from analyses.correspondence import keypoint_pairs, object_match_rate
    from store import reader

    out = capture(tmp_path / "corr.zarr", dataset="synthetic-correspondence")
    ds = reader.open(out)
    rate = object_match_rate(ds, keypoint_pairs(ds), array="values")
    assert rate.attrs["n_source_tokens"] >= 60
    assert float(rate.match_rate.min()) >= 3 * rate.attrs["chance"]


def test_ffn_top_keys_have_more_coherent_labels_than_random(toy_dir: Path, synthetic_root: Path, tmp_path: Path) -> None:
    from analyses.commands import FfnMemory

    out = capture(tmp_path / "prefixes.zarr", dataset="synthetic-coco", data_root=synthetic_root,
                  samples="annotations", template="bbox", visual_prefix=True, tokens="last")
    FfnMemory()(store=out, out=tmp_path / "ffn")
    cosine = json.loads((tmp_path / "ffn" / "ffn_memory.json").read_text())["mean_label_cosine"]
    assert np.mean(list(cosine["labels"].values())) > np.mean(list(cosine["random"].values())) + 0.01
