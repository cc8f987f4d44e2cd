"""`probing`: few-shot linear probes, text-token segmentation and paired choice, per layer and KV head."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import xarray as xr

import store.reader
from analyses import figures, probing
from analyses.command import Command
from analyses.commands.options import VectorOptions
from analyses.commands.summary import best, title
from analyses.ground_truth import object_masks
from analyses.labels import image_sets_by_label
from analyses.output import Output
from store import location
from store.arguments import option
from store.location import Location

CATEGORY_PREFIX = "category:"  # sample ids of a `--samples categories` capture: category:LABEL


@dataclass(frozen=True, kw_only=True)
class ProbingOptions(VectorOptions):
    n_support: int = option(2, help="support images per label")
    text_store: Location | None = option(None, help="text-only capture of the labels (--samples categories): path or URL",
                                         type=location.normalise)

    def stores(self) -> list[Location]:
        return [self.store] + ([self.text_store] if self.text_store is not None else [])


class Probing(Command):
    name = "probing"
    help = "few-shot linear probe, text-token segmentation and paired choice per layer and head"
    Options = ProbingOptions

    def run(self, options: ProbingOptions, output: Output) -> None:
        ds = store.reader.open(options.store)
        summary: dict[str, Any] = {"store": str(options.store), "array": options.array}
        sets = image_sets_by_label(ds, options.n_support + 1)
        if sets:
            summary["linear_probe"] = _linear_probe(ds, sets, options, output)
        if options.text_store is not None:
            summary.update(_text_segmentation(ds, sets, options, output))
        trials = probing.choice_trials(ds)
        if trials:
            accuracy = probing.paired_choice(ds, trials, options.array, options.part)
            output.zarr("paired_choice.zarr", accuracy)
            summary["paired_choice"] = {"n_trials": len(trials), "best": best(accuracy.accuracy)}
            output.figure("paired_choice.png",
                          figures.layer_head_scores(accuracy.accuracy, "accuracy", f"Paired choice ({options.array})"))
        if not output.written:
            raise ValueError("nothing to probe: no label with enough images for a support/query split, no --text-store, "
                             "no choice trials")
        output.json("probing.json", summary)


def _linear_probe(ds: xr.Dataset, sets: dict[str, list[int]], options: ProbingOptions,
                  output: Output) -> dict[str, Any]:
    """A probe per label trained on its first `n_support` images, scored on the others: its summary entry."""
    results = []
    for label, samples in sets.items():
        result = probing.linear_probe_segmentation(ds, samples[:options.n_support], samples[options.n_support:],
                                                   lambda s, label=label: object_masks(ds, s)[label], options.array,
                                                   options.part)
        results.append(result.miou.expand_dims(label=[label]))
    miou = xr.concat(results, "label")
    output.zarr("linear_probe.zarr", miou.rename("miou"))
    output.figure("linear_probe.png", figures.layer_head_scores(
        miou.mean("label"), "mIoU", f"Few-shot linear probe ({options.array}): {title(ds)}"))
    return {"labels": list(sets), "best": best(miou.mean("label"))}


def _text_segmentation(ds: xr.Dataset, sets: dict[str, list[int]], options: ProbingOptions,
                       output: Output) -> dict[str, Any]:
    """Each label's images segmented by the value of its name in the text store: the summary entry, when a label
    of `sets` has a sample there."""
    text_ds = store.reader.open(options.text_store)
    by_label = {str(t).removeprefix(CATEGORY_PREFIX): i for i, t in enumerate(text_ds.sample_id.values)}
    results = []
    for label, samples in sets.items():
        if label in by_label:
            result = probing.text_segmentation(ds, samples, text_ds, lambda s, i=by_label[label]: i,
                                               lambda s, label=label: object_masks(ds, s)[label], options.array,
                                               options.part)
            results.append(result.miou.expand_dims(label=[label]))
    if not results:
        return {}
    miou = xr.concat(results, "label")
    output.zarr("text_segmentation.zarr", miou.rename("miou"))
    output.figure("text_segmentation.png", figures.layer_head_scores(
        miou.mean("label"), "mIoU", f"Text-token segmentation ({options.array})"))
    return {"text_segmentation": {"labels": miou.label.values.tolist(), "best": best(miou.mean("label"))}}
