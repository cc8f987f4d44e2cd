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
from analyses.commands.options import PARTS, StoreOptions, open_store
from analyses.commands.summary import title
from analyses.intervals import as_json
from analyses.lens_run import TOKEN_SETS, LensRequest, parse_selection, projector, run_lens
from analyses.output import Output
from analyses.tokens import ImageTokens, captured_samples, image_tokens_of, n_images, sample_annotation
from analyses.topk import INPUT_DTYPES
from store import annotation as ann
from store.arguments import option
from store.schema import HIDDEN, SAMPLE, TOKEN_ID, CaptureConfig, TokenSet

LISTED_SAMPLES = 20  # samples whose top tokens the JSON lists


@dataclass(frozen=True, kw_only=True)
class LogitLensOptions(StoreOptions):
    k: int = option(5, help="top tokens kept per position")
    layer: int | None = option(None, help="stream shown in the decoded-token image grid (default: the best)")
    sample: int = option(0, help="sample shown in the decoded-token image grid")
    min_area: float | None = option(None, help="smallest object mask scored, in pixels (Neo et al.: 20000)")
    max_area: float | None = option(None, help="largest object mask scored, in pixels (Neo et al.: 30000)")
    samples: str = option(TokenSet.ALL.value, help="samples decoded: all (captured, with an image), or store indices/ranges like "
                                      "0-99,120")
    streams: str = option(TokenSet.ALL.value, help="residual streams decoded: all, or stream numbers/ranges like 0-4,28")
    token_set: str = option(TokenSet.IMAGE.value, choices=[t.value for t in TOKEN_SETS],
                            help="tokens decoded: image (image 0's tokens in --part, scored against objects and "
                                 "captions), text, last or all (top tokens only)")
    part: str = option("auto", choices=PARTS, help="image view of --token-set image (auto: the high-resolution grid "
                                                   "where there is one)")
    device: str = option("cpu", help="torch device of the unembedding products: cpu (see --threads) or cuda[:N]")
    threads: int | None = option(None, help="CPU threads of the products (default: torch's)")
    input_dtype: str = option("auto", choices=INPUT_DTYPES, help="inputs of the products (float32 accumulation "
                                                                 "always); auto: bfloat16 on CUDA for bf16 models")
    block_samples: int = option(8, help="samples per block of top_tokens.zarr; a stopped run resumes at the first "
                                        "block not done")


class LogitLens(Command):
    name = "logit-lens"
    help = "final norm + unembedding over hidden states: object hits, caption precision / recall"
    Options = LogitLensOptions

    def run(self, options: LogitLensOptions, output: Output) -> None:
        ds = open_store(options.store, HIDDEN)
        lens = logit_lens.Lens.from_store(store.reader.open_lens(options.store), CaptureConfig.of(ds.attrs).compute_dtype)
        captured = [int(s) for s in captured_samples(ds)
                    if options.token_set != TokenSet.IMAGE or n_images(ds, s) >= 1]
        if not captured:
            raise ValueError("no captured sample has an image")
        request = LensRequest(parse_selection(options.samples, captured, "samples"),
                              parse_selection(options.streams, list(ds.stream.values), "streams"),
                              options.token_set, options.part, options.k, options.block_samples)
        top = run_lens(ds, lens, output.path("top_tokens.zarr"), request,
                       projector(lens, options.device, options.input_dtype, options.threads))
        if options.token_set != TokenSet.IMAGE:
            output.json("logit_lens.json", {"store": str(options.store), "k": options.k, "token_set": options.token_set,
                                            "streams": list(request.streams), "n_samples": len(request.samples),
                                            "scores": "object and caption scores need --token-set image"})
            return
        decoded = decoded_images(ds, top, options.part)
        self._scores(ds, lens, decoded, np.array(request.streams), options, output)

    def _scores(self, ds: xr.Dataset, lens: logit_lens.Lens, decoded: dict[int, tuple[ImageTokens, np.ndarray]],
                streams: np.ndarray, options: LogitLensOptions, output: Output) -> None:
        """Object hits and caption words of the decoded image tokens: the zarr table, the JSON, the figures."""
        samples = list(decoded)
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
        _decoded_grid(ds, lens, decoded, streams, _shown_stream(options.layer, hits, streams), options.sample, output)


def decoded_images(ds: xr.Dataset, top: xr.Dataset, part: str) -> dict[int, tuple[ImageTokens, np.ndarray]]:
    """Per sample of a `run_lens` result over image tokens: its ImageTokens and top-k ids (stream, n_tokens, k)."""
    samples = [int(s) for s in top[SAMPLE].values]
    ids = top[TOKEN_ID].values
    return {tokens.sample: (tokens, ids[i, :, :len(tokens.positions)])
            for i, tokens in enumerate(image_tokens_of(ds, [(s, 0) for s in samples], part))}


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
        if layer not in streams:
            raise ValueError(f"--layer {layer}: not among the decoded streams {streams.tolist()}")
        return int(layer)
    if _best_stream(hits) >= 0:
        return _best_stream(hits)
    return int(streams[len(streams) // 2])


def _decoded_grid(ds: xr.Dataset, lens: logit_lens.Lens, decoded: dict[int, tuple[Any, np.ndarray]],
                  streams: np.ndarray, stream: int, sample: int, output: Output) -> None:
    """The top token of every image token of `sample` (the first sample when it has none) at `stream`, drawn on
    its image."""
    from PIL import Image

    shown = sample if sample in decoded else next(iter(decoded))
    tokens, ids = decoded[shown]
    image = Image.open(str(ds.image_path.values[shown, 0])).convert("RGB")
    labels = [lens.vocabulary[i] for i in ids[list(streams).index(stream), :, 0]]
    output.figure(f"decoded_grid_sample{shown}_stream{stream}.png",
                  figures.decoded_grid(image, tokens, labels, f"Top token per image token, stream {stream}"))
