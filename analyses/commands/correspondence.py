"""`correspondence`: semantic (keypoint PCK, object match) and temporal (label propagation J&F) correspondence, per
(layer, KV head) with 95% intervals over image pairs / videos, the best head held out, and the baselines (stream 0,
chance)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

from analyses import correspondence, figures, grid_intervals, heads, intervals, neighbours
from analyses.command import Command
from analyses.commands.options import VectorOptions, open_store
from analyses.commands.probing import BASELINE
from analyses.commands.summary import best, title
from analyses.output import Output
from store.arguments import option
from store.schema import HIDDEN, STREAM


@dataclass(frozen=True, kw_only=True)
class CorrespondenceOptions(VectorOptions):
    alpha: float = option(0.1, help="PCK threshold, fraction of the target box's longer side")
    metric: str = option("cosine", choices=neighbours.METRICS, help="similarity of token vectors")
    device: str = option("auto", choices=("auto", "cpu", "gpu"), help="faiss index device")
    topk: int = option(5, help="most similar context tokens whose labels a token averages")
    n_last: int = option(7, help="previous frames in the propagation context")
    radius: int = option(12, help="spatial neighbourhood, in token grid cells")
    temperature: float = option(0.1, help="of the softmax weights over the top-k similarities")


class Correspondence(Command):
    name = "correspondence"
    help = "semantic (keypoint PCK) and temporal (label propagation J&F) correspondence"
    Options = CorrespondenceOptions

    def run(self, options: CorrespondenceOptions, output: Output) -> None:
        ds = open_store(options.store, options.array)
        summary: dict[str, Any] = {"store": str(options.store), "array": options.array}
        pairs = correspondence.keypoint_pairs(ds)
        if pairs:
            summary.update(_semantic(ds, pairs, options, output))
        video_list = correspondence.videos(ds)
        if video_list:
            summary["temporal"] = _temporal(ds, video_list, options, output)
        if not pairs and not video_list:
            raise ValueError("the store has no keypoint pairs (2-image samples with 'keypoints') and no videos (frames "
                             "with 'masks'): see analyses.correspondence and the manifest format in the README")
        output.json("correspondence.json", summary)


def _semantic(ds: xr.Dataset, pairs: list[correspondence.KeypointPair], options: CorrespondenceOptions,
              output: Output) -> dict[str, Any]:
    """Keypoint PCK, and object-to-object matching where the pairs have boxes: their summary entries."""
    array = options.array
    pck = correspondence.semantic_correspondence(ds, pairs, array, options.part, options.alpha, options.metric,
                                                 device=options.device)
    grid = grid_intervals.ratio_grid(pck.pair_correct, pck.pair_keypoints)
    output.zarr("semantic_pck.zarr", xr.merge([pck, _prefixed(grid, "pck")], combine_attrs="override"))
    entry = {**pck.attrs, "pck": grid_intervals.grid_json(grid), "max_in_sample": best(pck.pck),
             "best": grid_intervals.held_out(pck.pair_correct, pck.pair_keypoints).as_dict()}
    if _has_stream_zero(ds):
        zero = correspondence.semantic_correspondence(ds, pairs, HIDDEN, options.part, options.alpha, options.metric,
                                                      layers=[0], device=options.device)
        entry["baseline"] = _baseline(grid_intervals.held_out(zero.pair_correct, zero.pair_keypoints))
    output.figure("semantic_pck.png", figures.layer_head_scores(
        pck.pck, f"PCK@{options.alpha}", f"Semantic correspondence ({array}): {title(ds)}",
        band=(grid.low, grid.high), band_label="95% interval over pairs", **_marks(entry)))
    entries = {"semantic": entry}
    if any(pair.source_box is not None and pair.target_box is not None for pair in pairs):
        entries["object_match"] = _object_match(ds, pairs, options, output)
    return entries


def _object_match(ds: xr.Dataset, pairs: list[correspondence.KeypointPair], options: CorrespondenceOptions,
                  output: Output) -> dict[str, Any]:
    """Object-to-object matching with intervals over pairs, beside chance: its summary entry."""
    matched = correspondence.object_match_rate(ds, pairs, options.array, options.part, options.metric,
                                               device=options.device)
    grid = grid_intervals.ratio_grid(matched.pair_matched, matched.pair_source_tokens)
    chance = intervals.bootstrap_ratio(matched.pair_chance.values, matched.pair_source_tokens.values)
    entry = {**matched.attrs, "match_rate": grid_intervals.grid_json(grid), "max_in_sample": best(matched.match_rate),
             "best": grid_intervals.held_out(matched.pair_matched, matched.pair_source_tokens).as_dict(),
             "mean": float(matched.match_rate.mean()), "chance_interval": chance.as_dict()}
    output.figure("object_match.png", figures.layer_head_scores(
        matched.match_rate, "object match rate",
        f"Object-to-object correspondence ({options.array}): {title(ds)}", chance.estimate,
        baseline_band=(chance.low, chance.high), baseline_label="chance", held_out=entry["best"],
        band=(grid.low, grid.high), band_label="95% interval over pairs"))
    return entry


def _temporal(ds: xr.Dataset, video_list: list[correspondence.Video], options: CorrespondenceOptions,
              output: Output) -> dict[str, Any]:
    """Label propagation through the videos, with intervals over videos: its summary entry."""
    def propagate(array: str, layers: list[int] | None) -> xr.Dataset:
        return correspondence.temporal_correspondence(ds, video_list, array, options.part, layers, options.n_last,
                                                      options.topk, options.radius, options.temperature)

    scores = propagate(options.array, None)
    per_video = (scores.J_video + scores.F_video) / 2
    grid = grid_intervals.ratio_grid(per_video)
    output.zarr("temporal_jf.zarr", xr.merge([scores, _prefixed(grid, "JF")], combine_attrs="override"))
    entry = {**scores.attrs, "JF": grid_intervals.grid_json(grid), "best": grid_intervals.held_out(per_video).as_dict(),
             "max_in_sample": best(scores.JF), "best_J": best(scores.J), "best_F": best(scores.F)}
    if _has_stream_zero(ds):
        zero = propagate(HIDDEN, [0])
        entry["baseline"] = _baseline(grid_intervals.held_out((zero.J_video + zero.F_video) / 2))
    output.figure("temporal_jf.png", figures.layer_head_scores(
        scores.JF, "J&F mean", f"Temporal correspondence ({options.array}): {title(ds)}",
        band=(grid.low, grid.high), band_label="95% interval over videos", **_marks(entry)))
    return entry


def _has_stream_zero(ds: xr.Dataset) -> bool:
    return HIDDEN in ds and 0 in ds[STREAM].values


def _prefixed(grid: xr.Dataset, name: str) -> xr.Dataset:
    """A `ratio_grid` as NAME_low, NAME_high, NAME_n beside the score NAME already stored."""
    return grid.drop_vars("estimate").rename({field: f"{name}_{field}" for field in ("low", "high", "n")})


def _baseline(held: heads.HeldOut) -> dict[str, Any]:
    """The stream-0 baseline's entry: its score on the report half, with its interval."""
    return {"representation": BASELINE, **held.report.as_dict()}


def _marks(entry: dict[str, Any]) -> dict[str, Any]:
    """layer_head_scores keywords: the held-out best head, and the stream-0 baseline with its band when present."""
    baseline = entry.get("baseline")
    if not baseline or baseline.get("estimate") is None:
        return {"held_out": entry["best"]}
    return {"held_out": entry["best"], "baseline": baseline["estimate"],
            "baseline_band": (baseline["low"], baseline["high"]), "baseline_label": BASELINE}
