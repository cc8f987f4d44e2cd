"""`clustering`: co-segmentation of the image sets sharing a label, and the seen / unseen label split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

import store.reader
from analyses import clustering, figures
from analyses.command import Command
from analyses.commands.options import VectorOptions
from analyses.commands.summary import best, title
from analyses.ground_truth import object_masks
from analyses.labels import image_sets_by_label, labels_per_sample
from analyses.output import Output
from store.arguments import option


@dataclass(frozen=True, kw_only=True)
class ClusteringOptions(VectorOptions):
    k: int = option(8, help="clusters")
    presence: float = option(0.05, help="share of an image's tokens for a cluster to count as present")
    image_fraction: float = option(0.5, help="common clusters are present in more than this share of images")
    min_images: int = option(2, help="smallest image set (images sharing a label)")


class Clustering(Command):
    name = "clustering"
    help = "co-segmentation by clustering image tokens, and the seen / unseen label split"
    Options = ClusteringOptions

    def run(self, options: ClusteringOptions, output: Output) -> None:
        ds = store.reader.open(options.store)
        summary: dict[str, Any] = {"store": str(options.store), "array": options.array,
                                   "co_segmentation": _co_segmentation(ds, options, output)}
        labels = sorted({label for found in labels_per_sample(ds).values() for label in found})
        if len(labels) >= 2:
            from analyses.label_embeddings import embed_labels

            summary["label_split"] = clustering.split_labels(labels, embed_labels(labels))
        output.json("clustering.json", summary)


def _co_segmentation(ds: xr.Dataset, options: ClusteringOptions, output: Output) -> dict[str, Any]:
    """Co-segment every image set; write the Jaccard grids and their mean's figure; the summary per set."""
    summaries, results = {}, []
    for label, samples in image_sets_by_label(ds, options.min_images).items():
        result = clustering.co_segmentation(ds, samples, lambda s, label=label: object_masks(ds, s)[label], options.array,
                                            options.part, options.k, options.presence, options.image_fraction)
        results.append(result.jaccard.expand_dims(image_set=[label]))
        summaries[label] = {"samples": samples, "best": best(result.jaccard)}
    if results:
        jaccard = xr.concat(results, "image_set")
        output.zarr("co_segmentation.zarr", jaccard.rename("jaccard"))
        output.figure("co_segmentation.png", figures.layer_head_scores(
            jaccard.mean("image_set"), "Jaccard (J_m)",
            f"Co-segmentation ({options.array}), mean of {len(results)} sets: {title(ds)}"))
    return summaries
