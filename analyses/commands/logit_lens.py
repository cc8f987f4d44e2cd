"""`logit-lens`: the final norm and unembedding over hidden states; object-token hits (Neo et al.'s per-image best
stream and the rate pooled per stream, each beside its label-permutation baseline) and caption precision / recall
per stream, all with 95% intervals over images, and the decoded tokens of one image drawn on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import xarray as xr

import store.reader
from analyses import figures
from analyses import lens as logit_lens
from analyses.command import Command
from analyses.commands.options import StoreOptions, open_store
from analyses.commands.summary import title
from analyses.intervals import as_json
from analyses.output import Output
from analyses.tokens import captured_samples, n_images, sample_annotation
from store import annotation as ann
from store.arguments import option
from store.schema import HIDDEN, CaptureConfig

LISTED_SAMPLES = 20  # samples whose top tokens the JSON lists


@dataclass(frozen=True, kw_only=True)
class LogitLensOptions(StoreOptions):
    k: int = option(5, help="top tokens kept per position")
    layer: int | None = option(None, help="stream shown in the decoded-token image grid (default: the best)")
    sample: int = option(0, help="sample shown in the decoded-token image grid")
    min_area: float | None = option(None, help="smallest object mask scored, in pixels (Neo et al.: 20000)")
    max_area: float | None = option(None, help="largest object mask scored, in pixels (Neo et al.: 30000)")


class LogitLens(Command):
    name = "logit-lens"
    help = "final norm + unembedding over hidden states: object hits, caption precision / recall"
    Options = LogitLensOptions

    def run(self, options: LogitLensOptions, output: Output) -> None:
        ds = open_store(options.store, HIDDEN)
        lens = logit_lens.Lens.from_store(store.reader.open_lens(options.store), CaptureConfig.of(ds.attrs).compute_dtype)
        samples = [int(s) for s in captured_samples(ds) if n_images(ds, s) >= 1]
        if not samples:
            raise ValueError("no captured sample has an image")
        streams = ds.stream.values
        decoded = logit_lens.image_top_tokens(ds, lens, samples, k=options.k)
        table = logit_lens.image_object_hits(decoded, lens, _object_instances(ds, samples), streams, options.min_area,
                                             options.max_area)
        hits = logit_lens.object_hit_scores(table)
        words = logit_lens.caption_scores(decoded, lens, _captions(ds, samples), streams)
        captions = {name: logit_lens.mean_over_images(words[name]) for name in ("precision", "recall")}
        output.zarr("logit_lens.zarr", xr.merge([table, words], join="outer"))
        top = {str(s): {str(int(st)): [[lens.vocabulary[i] for i in row] for row in decoded[s][1][si]]
                        for si, st in enumerate(streams)} for s in samples[:LISTED_SAMPLES]}
        output.json("logit_lens.json", {
            "store": str(options.store), "k": options.k, "object_tokens": logit_lens.OBJECT_TOKENS,
            "word_match": "whole words: class name, head noun, plurals, synonyms (analyses/object_words.py)",
            "area_filter_px": [options.min_area, options.max_area], "streams": streams.tolist(),
            "best_stream_object_hits": _best_stream(hits), **hits.as_json(),
            "hit_rate": hits.pooled.estimate.values.tolist(),
            "caption_words": {name: as_json(curve) for name, curve in captions.items()},
            "top_tokens_first_samples": top})
        output.figure("logit_lens_scores.png", _scores_figure(ds, hits, captions))
        _decoded_grid(ds, lens, decoded, _shown_stream(options.layer, hits, streams), options.sample, output)


def _scores_figure(ds: xr.Dataset, hits: logit_lens.ObjectHits, captions: dict[str, xr.Dataset]):
    """Object-token hit rates beside their permuted-label baselines (left), caption precision and recall (right)."""
    best = hits.best
    rate = f"{best.estimate:.1%} [{best.low:.1%}, {best.high:.1%}]" if best.n else "no objects"
    panels = {"object tokens naming their class": {
        "pooled over images": hits.pooled, "pooled, permuted-label baseline": hits.pooled_baseline,
        "mean over images": hits.per_image}, "caption words": captions}
    return figures.interval_panels(panels, "rate", f"Logit lens: {title(ds)}; per-image best stream: {rate}, "
                                                   f"n={best.n}", xlabel="residual stream")


def _best_stream(hits: logit_lens.ObjectHits) -> int:
    """The stream with the highest pooled object hit rate; -1 without object tokens."""
    if not hits.n_object_tokens:
        return -1
    return int(hits.pooled.stream.values[int(np.nanargmax(hits.pooled.estimate.values))])


def _object_instances(ds: xr.Dataset, samples: list[int]) -> dict[int, list[tuple[str, np.ndarray]]]:
    """Each sample's object instances (label, mask); none where the dataset's ground truth cannot be found."""
    from analyses.ground_truth import object_instances

    found = {}
    for sample in samples:
        try:
            found[sample] = object_instances(ds, sample)
        except (FileNotFoundError, KeyError):
            found[sample] = []
    return found


def _captions(ds: xr.Dataset, samples: list[int]) -> dict[int, list[str]]:
    return {s: sample_annotation(ds, s).get(ann.CAPTIONS, []) for s in samples}


def _shown_stream(layer: int | None, hits: logit_lens.ObjectHits, streams: np.ndarray) -> int:
    """The stream of the decoded grid: `layer` when given, else the best for object hits, else the middle one."""
    if layer is not None:
        return int(layer)
    if _best_stream(hits) >= 0:
        return _best_stream(hits)
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
