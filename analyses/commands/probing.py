"""`probing`: few-shot linear probes (seeded 5-shot episodes, foreground mIoU over classes), text-token segmentation
and paired choice, per layer and KV head; the best head chosen on one half of the units and reported on the other
with a 95% interval, beside the input visual representation (the residual stream entering layer 0) as baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from analyses import figures, heads, probing
from analyses.command import Command
from analyses.commands.options import VectorOptions, open_store
from analyses.commands.summary import title
from analyses.ground_truth import object_masks
from analyses.labels import image_sets_by_label
from analyses.output import Output
from store import location
from store.arguments import option
from store.location import Location
from store.schema import HIDDEN, SAMPLE, STREAM

CATEGORY_PREFIX = "category:"  # sample ids of a `--samples categories` capture: category:LABEL
UNIT = "unit"  # the (sample, label) units of text segmentation, across labels
BASELINE = "input visual representation (stream 0)"  # Liu et al.'s "Visual Encoder (post-proj)"


@dataclass(frozen=True, kw_only=True)
class ProbingOptions(VectorOptions):
    shots: int = option(5, help="support images per few-shot episode (Liu et al.: 5-shot)")
    episodes: int = option(50, help="few-shot episodes per split (selection, report)")
    seed: int = option(0, help="seed of the episodes, the selection / report splits and the bootstrap")
    text_store: Location | None = option(None, help="text-only capture of the labels (--samples categories): path or URL",
                                         type=location.normalise)

    def stores(self) -> list[Location]:
        return [self.store] + ([self.text_store] if self.text_store is not None else [])


class Probing(Command):
    name = "probing"
    help = "few-shot linear probe, text-token segmentation and paired choice per layer and head"
    Options = ProbingOptions

    def run(self, options: ProbingOptions, output: Output) -> None:
        ds = open_store(options.store, options.array)
        summary: dict[str, Any] = {"store": str(options.store), "array": options.array,
                                   "best_head": "chosen on the selection half of the units, reported on the other",
                                   "baseline": BASELINE if _has_stream_zero(ds) else None}
        sets = image_sets_by_label(ds, options.shots + 2)
        if sets:
            summary["linear_probe"] = _linear_probe(ds, sets, options, output)
        if options.text_store is not None:
            summary.update(_text_segmentation(ds, image_sets_by_label(ds, 2), options, output))
        trials = probing.choice_trials(ds)
        if trials:
            summary["paired_choice"] = _paired_choice(ds, trials, options, output)
        if not output.written:
            raise ValueError(f"nothing to probe: no label with {options.shots + 2} images for {options.shots}-shot "
                             "episodes, no --text-store, no choice trials")
        output.json("probing.json", summary)


def _has_stream_zero(ds: xr.Dataset) -> bool:
    return HIDDEN in ds and 0 in ds[STREAM].values


def _truth(ds: xr.Dataset):
    return lambda sample, label: object_masks(ds, sample)[label]


def _linear_probe(ds: xr.Dataset, sets: dict[str, list[int]], options: ProbingOptions,
                  output: Output) -> dict[str, Any]:
    """Seeded episodes over the labels: per-episode counts, the report-split mIoU grid and its figure, the held-out
    best head, and the same probe on stream 0."""
    tasks = probing.episodes(sets, options.shots, options.episodes, options.seed)
    counts = probing.linear_probe_segmentation(ds, tasks, _truth(ds), options.array, options.part, seed=options.seed)
    output.zarr("linear_probe.zarr", counts)
    entry = {"labels": sorted({t.label for t in tasks}), "shots": options.shots, "episodes_per_split": options.episodes,
             "metric": "foreground IoU summed per class over its episodes, averaged over classes"}
    def baseline() -> xr.Dataset | None:
        if not _has_stream_zero(ds):
            return None
        return probing.linear_probe_segmentation(ds, tasks, _truth(ds), HIDDEN, options.part, layers=[0],
                                                 seed=options.seed)

    entry.update(_held_out(counts, baseline, options.seed))
    output.figure("linear_probe.png", figures.layer_head_scores(
        probing.foreground_miou(counts, heads.REPORT), "foreground mIoU",
        f"{options.shots}-shot linear probe ({options.array}): {title(ds)}", **_figure_marks(entry)))
    return entry


def _held_out(counts: xr.Dataset, baseline_counts, seed: int) -> dict[str, Any]:
    """The held-out best head of per-unit IoU counts, and the baseline's report-split score when there is one."""
    entry: dict[str, Any] = {"best": probing.held_out_miou(counts, seed).as_dict()}
    baseline = baseline_counts()
    if baseline is not None:
        entry["baseline"] = probing.held_out_miou(baseline, seed).report.as_dict()
    return entry


def _figure_marks(entry: dict[str, Any]) -> dict[str, Any]:
    """layer_head_scores keywords: the baseline with its band and the held-out best head."""
    baseline = entry.get("baseline")
    if not baseline or baseline.get("estimate") is None:
        return {"held_out": entry["best"]}
    return {"baseline": baseline["estimate"], "baseline_band": (baseline["low"], baseline["high"]),
            "baseline_label": BASELINE, "held_out": entry["best"]}


def _text_segmentation(ds: xr.Dataset, sets: dict[str, list[int]], options: ProbingOptions,
                       output: Output) -> dict[str, Any]:
    """Each label's images segmented by the value of its name in the text store, halved into selection and report
    images per label: the summary entry, when a label of `sets` has a sample there."""
    text_ds = open_store(options.text_store, options.array)
    by_label = {str(t).removeprefix(CATEGORY_PREFIX): i for i, t in enumerate(text_ds.sample_id.values)}
    found = {label: samples for label, samples in sets.items() if label in by_label}
    if not found:
        return {}

    def segment(array: str, layers: list[int] | None) -> xr.Dataset:
        parts = [probing.text_segmentation(ds, samples, text_ds, lambda s, i=by_label[label]: i,
                                           lambda s, label=label: object_masks(ds, s)[label], array, options.part,
                                           layers, label, heads.split(len(samples), options.seed))
                 .drop_vars("iou").rename({SAMPLE: UNIT}) for label, samples in found.items()]
        return xr.concat(parts, UNIT)

    counts = segment(options.array, None)
    output.zarr("text_segmentation.zarr", counts)
    with_baseline = _has_stream_zero(ds) and _has_stream_zero(text_ds)
    entry = {"labels": sorted(found), "metric": "foreground IoU summed per class over its images, averaged over classes",
             **_held_out(counts, lambda: segment(HIDDEN, [0]) if with_baseline else None, options.seed)}
    output.figure("text_segmentation.png", figures.layer_head_scores(
        probing.foreground_miou(counts, heads.REPORT), "foreground mIoU", f"Text-token segmentation ({options.array})",
        **_figure_marks(entry)))
    return {"text_segmentation": entry}


def _paired_choice(ds: xr.Dataset, trials: list[probing.ChoiceTrial], options: ProbingOptions,
                   output: Output) -> dict[str, Any]:
    """Accuracy per head, the held-out best head with its exact binomial interval, chance and stream 0."""
    result = probing.paired_choice(ds, trials, options.array, options.part, seed=options.seed)
    output.zarr("paired_choice.zarr", result)
    entry: dict[str, Any] = {"n_trials": len(trials), "chance": result.attrs["chance"],
                             "best": probing.held_out_accuracy(result).as_dict()}
    if _has_stream_zero(ds):
        entry["baseline"] = probing.held_out_accuracy(
            probing.paired_choice(ds, trials, HIDDEN, options.part, [0], options.seed)).report.as_dict()
    report = result.correct.isel({probing.TRIAL: np.flatnonzero(result[probing.UNIT_SPLIT].values == heads.REPORT)})
    report = report.mean(probing.TRIAL)
    output.figure("paired_choice.png", figures.layer_head_scores(
        report, "accuracy", f"Paired choice ({options.array})", result.attrs["chance"], baseline_label="chance",
        held_out=entry["best"]))
    return entry

