"""`variance`: input-agnostic image keys, from the per-(layer, KV head) key variance across samples."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import xarray as xr

from analyses import figures, variance
from analyses.command import Command
from analyses.commands.options import StoreOptions, open_store
from analyses.output import Output
from analyses.tokens import captured_samples
from store.arguments import option
from store.schema import KEYS, KEYS_PREROPE, VALUES, ImagePart

ALL_PARTS = "all"  # --part: the image tokens of every view


@dataclass(frozen=True, kw_only=True)
class VarianceOptions(StoreOptions):
    array: str = option(KEYS, choices=(KEYS, KEYS_PREROPE, VALUES), help="the per-head vectors whose variance is measured")
    part: str = option("base", choices=("base", "grid", ALL_PARTS),
                       help="image tokens matched across samples (base view: same positions for every image size)")
    method: str = option(variance.AUTO, choices=variance.THRESHOLD_METHODS,
                         help="auto: the histogram valley when Hartigan's dip test finds the distribution bimodal, "
                              "no key flagged when it does not; valley or otsu: that split regardless")
    threshold: float | None = option(None, help="a fixed threshold instead")
    allow_rotated: bool = option(False, help="measure post-RoPE keys even where a cell's sequence position differs "
                                             "between samples (only for rotary positions that follow the image grid)")
    layer_groups: str | None = option(None, help="first middle layer, first late layer (e.g. 8,18); default 8:10:10 "
                                                 "proportions")
    pca_samples: str | None = option(None, help="two sample indices for the PCA figure (default: the first two)")


class Variance(Command):
    name = "variance"
    help = "input-agnostic image keys: per (layer, KV head) key variance across samples"
    Options = VarianceOptions

    def run(self, options: VarianceOptions, output: Output) -> None:
        ds = open_store(options.store, options.array)
        part = None if options.part == ALL_PARTS else ImagePart[options.part.upper()]
        values = variance.key_variance(ds, options.array, part, options.allow_rotated).compute()
        chosen = variance.choose_threshold(values.values, options.method, options.threshold)
        keys = variance.input_agnostic_keys(values, chosen, _groups(values, options.layer_groups))
        keys["store"] = str(options.store)
        _warn(chosen, keys)
        output.zarr("key_variance.zarr", values)
        output.json("input_agnostic_keys.json", keys)
        output.figure("key_variance_hist.png", figures.variance_histogram(values, chosen.as_dict()))
        output.figure("key_variance_heatmap.png", figures.variance_heatmap(values, chosen.value))
        if options.pca_samples:
            samples = tuple(int(s) for s in options.pca_samples.split(","))
        else:
            samples = tuple(int(s) for s in captured_samples(ds)[:2])
        pca = variance.key_pca(ds, samples, options.array, part)
        output.figure("key_pca.png", figures.key_pca_scatter(pca, keys[variance.ALL_FLAGGED]))


def _warn(chosen: variance.Threshold, keys: dict) -> None:
    """Say loudly when the distribution is not bimodal, and when Otsu and the valley disagree."""
    test = chosen.bimodality
    if not test.bimodal:
        consequence = ("NO KEY IS FLAGGED (force a split with --method valley|otsu or --threshold only if you know "
                       "why)") if chosen.value is None else \
            f"keys split anyway at {chosen.value:.3g} ({chosen.method}): a cut through one mode, not two"
        print(f"WARNING: the key variance is not bimodal (Hartigan's dip test: dip {test.dip:.3g}, p = "
              f"{test.p_value:.3g} over {test.n} keys): {consequence}. Liu et al.'s input-agnostic keys are the low "
              f"mode of a bimodal distribution", file=sys.stderr)
    elif keys["otsu_and_valley_agree"] is not True:
        print("warning: Otsu's threshold and the histogram valley do not split the keys alike (or there is no "
              "valley)", file=sys.stderr)


def _groups(values: xr.DataArray, layer_groups: str | None) -> dict[str, list[int]] | None:
    """The early / middle / late layers of `--layer-groups MIDDLE,LATE`; None for the paper's proportions."""
    if not layer_groups:
        return None
    middle, late = (int(v) for v in layer_groups.split(","))
    return variance.layer_groups([int(v) for v in values.layer.values], (middle, late))
