"""`clustering`: co-segmentation of the image sets sharing a label (Amir et al.'s saliency voting, J_m with the best
head chosen on half of each set's images and reported on the other half, stream 0 as the baseline), and the seen /
unseen label split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

from analyses import clustering, figures, heads, intervals
from analyses.command import Command
from analyses.commands.options import VectorOptions, open_store
from analyses.commands.summary import title
from analyses.ground_truth import object_masks
from analyses.labels import image_sets_by_label, labels_per_sample
from analyses.output import Output
from store.arguments import option
from store.schema import HIDDEN, KV_HEAD, LAYER, SAMPLE, STREAM

SALIENCY = ("attention", "none")
UNIT, IMAGE_SET, SPLIT = "unit", "image_set", "split"  # co_segmentation.zarr: one unit per (image set, image)


@dataclass(frozen=True, kw_only=True)
class ClusteringOptions(VectorOptions):
    k: int = option(0, help="clusters (0: Amir et al.'s elbow rule)")
    saliency: str = option("attention", choices=SALIENCY,
                           help="how the common object is told from a shared background: attention (the last "
                                "position's attention to the image tokens; needs --attention-last) or none (every "
                                "common cluster is foreground)")
    threshold: float = option(clustering.SALIENCY_THRESHOLD, help="mean saliency above which a cluster is salient in "
                                                                  "an image")
    salient_images: float = option(clustering.SALIENT_IMAGES, help="share of the images a foreground cluster is "
                                                                   "salient in")
    presence: float = option(0.05, help="--saliency none: share of an image's tokens for a cluster to count as present")
    image_fraction: float = option(0.5, help="--saliency none: common clusters are present in more than this share "
                                             "of images")
    min_images: int = option(2, help="smallest image set (images sharing a label)")
    seed: int = option(0, help="seed of k-means, the selection / report halves and the bootstrap")


class Clustering(Command):
    name = "clustering"
    help = "co-segmentation by clustering image tokens, and the seen / unseen label split"
    Options = ClusteringOptions

    def run(self, options: ClusteringOptions, output: Output) -> None:
        ds = open_store(options.store, options.array)
        summary: dict[str, Any] = {"store": str(options.store), "array": options.array,
                                   "co_segmentation": _co_segmentation(ds, options, output)}
        labels = sorted({label for found in labels_per_sample(ds).values() for label in found})
        if len(labels) >= 2:
            from analyses.label_embeddings import embed_labels

            summary["label_split"] = clustering.split_labels(labels, embed_labels(labels))
        output.json("clustering.json", summary)


def _jaccards(ds: xr.Dataset, sets: dict[str, list[int]], options: ClusteringOptions, array: str,
              layers: list[int] | None) -> xr.Dataset:
    """Per-image Jaccard of every set, as units (image set, sample) with each set's images halved into selection
    and report images."""
    parts = []
    for label, samples in sets.items():
        result = clustering.co_segmentation(
            ds, samples, lambda s, label=label: object_masks(ds, s)[label], array, options.part, options.k,
            options.saliency == "attention", options.threshold, options.salient_images, options.presence,
            options.image_fraction, layers, options.seed)
        parts.append(result.rename({SAMPLE: UNIT}).assign_coords(
            {IMAGE_SET: (UNIT, [label] * len(samples)), SAMPLE: (UNIT, samples),
             SPLIT: (UNIT, heads.split(len(samples), options.seed).astype(str))}))
    return xr.concat(parts, UNIT)


def _held_out(jaccard: xr.DataArray, seed: int) -> heads.HeldOut:
    """The head with the best mean Jaccard over the selection images, its mean over the report images with a
    bootstrap interval over them."""
    selection = jaccard.isel({UNIT: np.flatnonzero(jaccard[SPLIT].values == heads.SELECTION)}).mean(UNIT)
    layer, head = heads.best_head(selection)
    report = jaccard.isel({UNIT: np.flatnonzero(jaccard[SPLIT].values == heads.REPORT)})
    return heads.HeldOut(layer, head, float(selection.sel({LAYER: layer, KV_HEAD: head})),
                         intervals.bootstrap_mean(report.sel({LAYER: layer, KV_HEAD: head}).values, seed=seed))


def _co_segmentation(ds: xr.Dataset, options: ClusteringOptions, output: Output) -> dict[str, Any]:
    """Co-segment every image set; write the per-image Jaccards and the report half's figure; the summary."""
    sets = image_sets_by_label(ds, options.min_images)
    if not sets:
        return {"sets": {}, "note": f"no label is shared by {options.min_images} single-image samples"}
    scores = _jaccards(ds, sets, options, options.array, None)
    output.zarr("co_segmentation.zarr", scores)
    best = _held_out(scores.jaccard, options.seed)
    entry: dict[str, Any] = {
        "saliency": options.saliency, "k": options.k or "elbow", "metric": "J_m: Jaccard per image, mean over images",
        "sets": {label: {"samples": samples} for label, samples in sets.items()}, "best": best.as_dict()}
    marks: dict[str, Any] = {"held_out": entry["best"]}
    if HIDDEN in ds and 0 in ds[STREAM].values:
        baseline = _held_out(_jaccards(ds, sets, options, HIDDEN, [0]).jaccard, options.seed).report
        entry["baseline"] = {"representation": "input visual representation (stream 0)", **baseline.as_dict()}
        marks.update(baseline=baseline.estimate, baseline_band=(baseline.low, baseline.high),
                     baseline_label="input visual representation (stream 0)")
    report = scores.jaccard.isel({UNIT: np.flatnonzero(scores[SPLIT].values == heads.REPORT)}).mean(UNIT)
    output.figure("co_segmentation.png", figures.layer_head_scores(
        report, "Jaccard (J_m)", f"Co-segmentation ({options.array}), {len(sets)} sets, report half: {title(ds)}",
        **marks))
    return entry
