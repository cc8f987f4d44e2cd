"""`cosine`: inter-modal cosine similarity of hidden states per stream, one set of curves per store: image vs the
user's text, image vs the template's text tokens, the anisotropy baselines (image-image, text-text) and the
mean-centred image-text curve, each as a mean over samples with a 95% interval."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from analyses import cosine, figures
from analyses.command import Command
from analyses.commands.options import open_store
from analyses.intervals import as_json
from analyses.output import Output
from store import location
from store.arguments import option
from store.location import Location
from store.schema import HIDDEN, PROMPT, STREAM, CaptureConfig

SUMMARY_FIELDS = ("mean", "low", "high", "std", "q25", "q75", "n_samples")  # of cosine.summarise, in the JSON


@dataclass(frozen=True, kw_only=True)
class CosineOptions:
    store: tuple[Location, ...] = option(help="store path or URL (s3://...) (repeat for one curve per store)",
                                         type=location.normalise, repeat=True)
    out: Path = option(help="directory for results and figures")
    text: str = option(cosine.USER, choices=cosine.TEXT_SETS,
                       help="text tokens compared: the user's text (default), the template's, those after the image, "
                            "or all")
    labels: str | None = option(None, help="comma-separated curve labels, one per --store")

    def stores(self) -> list[Location]:
        return list(self.store)


class Cosine(Command):
    name = "cosine"
    help = "inter-modal cosine similarity of hidden states per layer, with anisotropy baselines"
    Options = CosineOptions

    def run(self, options: CosineOptions, output: Output) -> None:
        names = options.labels.split(",") if options.labels else []
        results: dict[str, dict[str, xr.Dataset]] = {}
        summaries: dict[str, Any] = {}
        for index, path in enumerate(options.store):
            ds = open_store(path, HIDDEN)
            label = names[index] if index < len(names) else _default_label(ds)
            results[label] = _store_curves(ds, options.text)
            summaries[label] = {"store": str(path), **{
                name: {STREAM: curve.stream.values.tolist(), **{k: as_json(_as_curve(curve, k))["estimate"]
                                                               for k in SUMMARY_FIELDS}}
                for name, curve in results[label].items()}}
        output.json("cosine_curves.json", {
            "text_tokens": options.text, "centred": "hidden states minus the store's mean hidden state per stream",
            "interval": "bootstrap over samples (low, high)", "curves": summaries})
        output.zarr("cosine_curves.zarr", xr.concat(
            [xr.concat([c.expand_dims(series=[k]) for k, c in r.items()], "series").expand_dims(curve=[label])
             for label, r in results.items()], "curve"))
        output.figure("cosine_curves.png", _figure(results, options.text))


def _store_curves(ds: xr.Dataset, text: str) -> dict[str, xr.Dataset]:
    """One store's curves, summarised over samples: image-text, image-template (when the text is the user's),
    image-image and text-text, and image-text of mean-centred hidden states."""
    plain = cosine.curves(ds, text).compute()
    centred = cosine.curves(ds, text, cosine.mean_hidden(ds).compute()).compute()
    out = {"image_text": cosine.summarise(plain.image_text), "image_image": cosine.summarise(plain.image_image),
           "text_text": cosine.summarise(plain.text_text), "image_text_centred": cosine.summarise(centred.image_text)}
    if text == cosine.USER:
        out["image_template"] = cosine.summarise(cosine.cosine_curve(ds, cosine.TEMPLATE).compute())
    return out


def _as_curve(summary: xr.Dataset, field: str = "mean") -> xr.Dataset:
    """`field` of a summary in the `intervals.stack` form (the interval of the mean; none for the other fields)."""
    interval = field == "mean"
    return xr.Dataset({"estimate": summary[field], "low": summary["low" if interval else field],
                       "high": summary["high" if interval else field], "n": summary["n_samples"]})


def _figure(results: dict[str, dict[str, xr.Dataset]], text: str):
    """Panels: image vs text, image vs template, the anisotropy baselines, image vs text mean-centred; one line per
    store."""
    text_name = {cosine.USER: "user text", cosine.TEMPLATE: "template tokens"}.get(text, f"text ({text})")
    panels = {f"image vs {text_name}": {label: _as_curve(r["image_text"]) for label, r in results.items()}}
    if text == cosine.USER:
        panels["image vs template tokens"] = {label: _as_curve(r["image_template"]) for label, r in results.items()}
    panels["anisotropy baselines"] = {
        f"{label}, {pair} baseline": _as_curve(r[key]) for label, r in results.items()
        for key, pair in (("image_image", "image-image"), ("text_text", "text-text"))}
    panels[f"image vs {text_name}, mean-centred"] = {label: _as_curve(r["image_text_centred"])
                                                     for label, r in results.items()}
    return figures.interval_panels(panels, "mean cosine similarity", "Inter-modal cosine similarity of hidden states",
                                   xlabel="layer (residual stream)")


def _default_label(ds: xr.Dataset) -> str:
    """"MODEL / PROMPT SET" of a store, or "MODEL / prompt" for one captured with a single prompt."""
    config = CaptureConfig.of(ds.attrs)
    return f"{config.model} / {config.prompt_set or PROMPT}"
