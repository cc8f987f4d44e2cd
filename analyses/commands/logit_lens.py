"""`logit-lens`: the final norm and unembedding over hidden states; object-token hits and caption precision / recall
per stream, and the decoded tokens of one image drawn on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

import store.reader
from analyses import figures
from analyses import lens as logit_lens
from analyses.command import Command
from analyses.commands.options import StoreOptions
from analyses.commands.summary import title
from analyses.output import Output
from analyses.tokens import captured_samples, n_images, sample_annotation
from store import annotation as ann
from store.arguments import option
from store.schema import CaptureConfig

LISTED_SAMPLES = 20  # samples whose top tokens the JSON lists


@dataclass(frozen=True, kw_only=True)
class LogitLensOptions(StoreOptions):
    k: int = option(5, help="top tokens kept per position")
    layer: int | None = option(None, help="stream shown in the decoded-token image grid (default: the best)")
    sample: int = option(0, help="sample shown in the decoded-token image grid")


class LogitLens(Command):
    name = "logit-lens"
    help = "final norm + unembedding over hidden states: object hits, caption precision / recall"
    Options = LogitLensOptions

    def run(self, options: LogitLensOptions, output: Output) -> None:
        ds = store.reader.open(options.store)
        lens = logit_lens.Lens.from_store(store.reader.open_lens(options.store), CaptureConfig.of(ds.attrs).compute_dtype)
        samples = [int(s) for s in captured_samples(ds) if n_images(ds, s) >= 1]
        if not samples:
            raise ValueError("no captured sample has an image")
        streams = ds.stream.values
        decoded = logit_lens.image_top_tokens(ds, lens, samples, k=options.k)
        hits = logit_lens.object_hit_rate(decoded, lens, _object_masks(ds, samples), streams)
        words = logit_lens.caption_scores(decoded, lens, _captions(ds, samples), streams)
        output.zarr("logit_lens.zarr", xr.merge([hits, words]).assign_attrs(hits.attrs))
        top = {str(s): {str(int(st)): [[lens.vocabulary[i] for i in row] for row in decoded[s][1][si]]
                        for si, st in enumerate(streams)} for s in samples[:LISTED_SAMPLES]}
        output.json("logit_lens.json", {
            "store": str(options.store), "k": options.k, "best_stream_object_hits": hits.attrs["best_stream"],
            "hit_rate": hits.hit_rate.values.tolist(), "precision": words.precision.values.tolist(),
            "recall": words.recall.values.tolist(), "streams": streams.tolist(),
            "n_object_tokens": hits.attrs["n_object_tokens"], "top_tokens_first_samples": top})
        output.figure("logit_lens_scores.png", figures.per_layer_lines(
            {"object-token hit rate": hits.hit_rate, "caption precision": words.precision,
             "caption recall": words.recall}, "score", f"Logit lens: {title(ds)}", xlabel="residual stream"))
        _decoded_grid(ds, lens, decoded, _shown_stream(options.layer, hits, streams), options.sample, output)


def _object_masks(ds: xr.Dataset, samples: list[int]) -> dict[int, dict[str, np.ndarray]]:
    """Each sample's object masks by label; none where the dataset's ground truth cannot be found."""
    from analyses.ground_truth import object_masks

    masks = {}
    for sample in samples:
        try:
            masks[sample] = object_masks(ds, sample)
        except (FileNotFoundError, KeyError):
            masks[sample] = {}
    return masks


def _captions(ds: xr.Dataset, samples: list[int]) -> dict[int, list[str]]:
    return {s: sample_annotation(ds, s).get(ann.CAPTIONS, []) for s in samples}


def _shown_stream(layer: int | None, hits: xr.Dataset, streams: np.ndarray) -> int:
    """The stream of the decoded grid: `layer` when given, else the best for object hits, else the middle one."""
    if layer is not None:
        return int(layer)
    if hits.attrs["best_stream"] >= 0:
        return int(hits.attrs["best_stream"])
    return int(streams[len(streams) // 2])


def _decoded_grid(ds: xr.Dataset, lens: logit_lens.Lens, decoded: dict[int, tuple[Any, np.ndarray]], stream: int,
                  sample: int, output: Output) -> None:
    """The top token of every image token of `sample` (the first sample when it has none) at `stream`, drawn on
    its image."""
    from PIL import Image

    shown = sample if sample in decoded else next(iter(decoded))
    tokens, ids = decoded[shown]
    image = Image.open(str(ds.image_path.values[shown, 0])).convert("RGB")
    labels = [lens.vocabulary[i] for i in ids[list(ds.stream.values).index(stream), :, 0]]
    output.figure(f"decoded_grid_sample{shown}_stream{stream}.png",
                  figures.decoded_grid(image, tokens, labels, f"Top token per image token, stream {stream}"))
