"""`cosine`: inter-modal cosine similarity of hidden states per stream, one curve per store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import xarray as xr

import store.reader
from analyses import cosine, figures
from analyses.command import Command
from analyses.output import Output
from store import location
from store.arguments import option
from store.location import Location
from store.schema import PROMPT, STREAM, CaptureConfig

SUMMARY_FIELDS = ("mean", "std", "q25", "q75", "n_samples")  # of cosine.summarise, per curve in the JSON


@dataclass(frozen=True, kw_only=True)
class CosineOptions:
    store: tuple[Location, ...] = option(help="store path or URL (s3://...) (repeat for one curve per store)",
                                         type=location.normalise, repeat=True)
    out: Path = option(help="directory for results and figures")
    text: str = option("after_image", choices=cosine.TEXT_SETS, help="text tokens compared")
    labels: str | None = option(None, help="comma-separated curve labels, one per --store")

    def stores(self) -> list[Location]:
        return list(self.store)


class Cosine(Command):
    name = "cosine"
    help = "inter-modal cosine similarity of hidden states per layer"
    Options = CosineOptions

    def run(self, options: CosineOptions, output: Output) -> None:
        names = options.labels.split(",") if options.labels else []
        curves, summaries = {}, {}
        for index, path in enumerate(options.store):
            ds = store.reader.open(path)
            label = names[index] if index < len(names) else _default_label(ds)
            summary = cosine.summarise(cosine.cosine_curve(ds, options.text).compute())
            curves[label] = summary
            summaries[label] = {"store": str(path), STREAM: summary.stream.values.tolist(),
                                **{k: summary[k].values.tolist() for k in SUMMARY_FIELDS}}
        output.json("cosine_curves.json", {"text_tokens": options.text, "curves": summaries})
        output.zarr("cosine_curves.zarr", xr.concat([s.expand_dims(curve=[k]) for k, s in curves.items()], "curve"))
        output.figure("cosine_curves.png", figures.cosine_curves(curves))


def _default_label(ds: xr.Dataset) -> str:
    """"MODEL / PROMPT SET" of a store, or "MODEL / prompt" for one captured with a single prompt."""
    config = CaptureConfig.of(ds.attrs)
    return f"{config.model} / {config.prompt_set or PROMPT}"
