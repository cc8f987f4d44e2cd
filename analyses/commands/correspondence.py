"""`correspondence`: semantic (keypoint PCK, object match) and temporal (label propagation J&F) correspondence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

import store.reader
from analyses import correspondence, figures, neighbours
from analyses.command import Command
from analyses.commands.options import VectorOptions
from analyses.commands.probing import BASELINE
from analyses.commands.summary import best, title
from analyses.output import Output
from analyses.pck import grid_json, held_out_pck, pck_intervals
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
        ds = store.reader.open(options.store)
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
    grid = pck_intervals(pck)
    output.zarr("semantic_pck.zarr", xr.merge([pck, grid.drop_vars("pck")], combine_attrs="override"))
    entry = {**pck.attrs, "pck": grid_json(grid), "best": held_out_pck(pck).as_dict(), "max_in_sample": best(pck.pck)}
    marks: dict[str, Any] = {"held_out": entry["best"]}
    if HIDDEN in ds and 0 in ds[STREAM].values:
        baseline = held_out_pck(correspondence.semantic_correspondence(
            ds, pairs, HIDDEN, options.part, options.alpha, options.metric, layers=[0], device=options.device)).report
        entry["baseline"] = {"representation": BASELINE, **baseline.as_dict()}
        marks |= {"baseline": baseline.estimate, "baseline_band": (baseline.low, baseline.high),
                  "baseline_label": BASELINE}
    output.figure("semantic_pck.png", figures.layer_head_scores(
        pck.pck, f"PCK@{options.alpha} (95% int. over pairs)", f"Semantic correspondence ({array}): {title(ds)}",
        band=(grid.pck_low, grid.pck_high), **marks))
    entries = {"semantic": entry}
    if any(pair.source_box is not None and pair.target_box is not None for pair in pairs):
        matched = correspondence.object_match_rate(ds, pairs, array, options.part, options.metric, device=options.device)
        output.figure("object_match.png", figures.layer_head_scores(
            matched.match_rate, "object match rate", f"Object-to-object correspondence ({array}): {title(ds)}",
            baseline=matched.chance))
        entries["object_match"] = {**matched.attrs, "best": best(matched.match_rate),
                                   "mean": float(matched.match_rate.mean())}
    return entries


def _temporal(ds: xr.Dataset, video_list: list[correspondence.Video], options: CorrespondenceOptions,
              output: Output) -> dict[str, Any]:
    """Label propagation through the videos: its summary entry."""
    scores = correspondence.temporal_correspondence(ds, video_list, options.array, options.part, n_last=options.n_last,
                                                    topk=options.topk, radius=options.radius,
                                                    temperature=options.temperature)
    output.zarr("temporal_jf.zarr", scores)
    output.figure("temporal_jf.png", figures.layer_head_scores(
        scores.JF, "J&F mean", f"Temporal correspondence ({options.array}): {title(ds)}"))
    return {**scores.attrs, "best": best(scores.JF), "best_J": best(scores.J), "best_F": best(scores.F)}
