"""Matplotlib figures in the papers' styles. Each function takes results (xarray) and returns a Figure.

The backend is left to the caller: notebooks show figures inline, the CLI selects Agg."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from store.schema import KV_HEAD, LAYER


def token_norms(curves: dict[str, xr.Dataset], gaussian: float, title: str) -> Figure:
    """Mean hidden-state norm per stream and token kind (left), high-norm image token fraction (right), each with
    its 95% interval over images (`analyses.token_norms.with_intervals`); `gaussian`: the fraction the criterion
    flags in a normal distribution, drawn as a reference."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for name, curve in curves.items():
        if not name.startswith("mean_norm:"):
            continue
        line, = left.plot(curve.stream, curve.estimate, marker="o", label=name.removeprefix("mean_norm:"))
        left.fill_between(curve.stream, curve.low, curve.high, color=line.get_color(), alpha=0.18, linewidth=0)
    left.set(xlabel="residual stream (input of layer i; last = final layer output)", ylabel="mean L2 norm (95% interval)",
             title="Hidden-state norm by token kind")
    left.legend()
    registers = curves["register_fraction"]
    error = np.vstack([registers.estimate - registers.low, registers.high - registers.estimate])
    right.bar(registers.stream, registers.estimate, yerr=np.nan_to_num(error.clip(min=0)), capsize=3)
    right.axhline(gaussian, color="#c44e52", linestyle="--", label=f"normal distribution's tail ({gaussian:.1%})")
    right.legend(fontsize=8)
    for axis in (left, right):
        axis.set_xticks([int(s) for s in registers.stream.values])
    right.set(xlabel="residual stream", ylabel=f"fraction of image tokens (95% int., n = {int(registers.n.max())} images)",
              title="High-norm image tokens (> mean + 2 std)")
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def variance_histogram(variance: xr.DataArray, threshold: dict, bins: int = 30) -> Figure:
    """Distribution of per-(layer, head) key variance with the chosen threshold (Liu et al. Fig. 14)."""
    figure, axis = plt.subplots(figsize=(6, 3.5))
    axis.hist(variance.values.ravel(), bins=bins, color="#4c72b0", edgecolor="white")
    if threshold["value"] is None:  # nothing flagged: the dip test found no second mode
        axis.plot([], [], " ", label=f"no threshold ({threshold['method']})")
    else:
        axis.axvline(threshold["value"], color="black", linestyle="--",
                     label=f"threshold {threshold['value']:.3g} ({threshold['method']})")
    if "bimodality" in threshold:
        axis.plot([], [], " ", label=f"dip test p = {threshold['bimodality']['p_value']:.3g}")
    if threshold.get("valley") is not None and threshold["method"] != "valley":
        axis.axvline(threshold["valley"], color="#dd8452", linestyle=":", label=f"valley {threshold['valley']:.3g}")
    axis.set(xlabel="L2 variance of image keys across samples", ylabel="keys (layer, KV head)",
             title="Image key variance")
    axis.legend()
    figure.tight_layout()
    return figure


def variance_heatmap(variance: xr.DataArray, threshold: float | None) -> Figure:
    """(layer x KV head) heatmap of key variance, input-agnostic keys (below `threshold`) outlined (Liu et al.
    Fig. 15); no threshold (the dip test found one mode) outlines nothing and says so in the title."""
    size = (max(3.5, 0.5 * variance.sizes[KV_HEAD] + 2), max(3.0, 0.22 * variance.sizes[LAYER] + 1.5))
    figure, axis = plt.subplots(figsize=size)
    image = axis.imshow(variance.values, aspect="auto", cmap="viridis", origin="lower")
    flagged = np.zeros(variance.shape, bool) if threshold is None else variance.values < threshold
    for li, hi in np.argwhere(flagged):
        axis.add_patch(plt.Rectangle((hi - 0.5, li - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
    axis.set_xticks(range(variance.sizes[KV_HEAD]), [str(h) for h in variance.kv_head.values])
    axis.set_yticks(range(variance.sizes[LAYER]), [str(v) for v in variance.layer.values])
    title = "Key variance (no threshold: not bimodal)" if threshold is None else "Key variance (red: input-agnostic)"
    axis.set(xlabel="KV head", ylabel=LAYER, title=title)
    figure.colorbar(image, ax=axis, label="variance")
    figure.tight_layout()
    return figure


def key_pca_scatter(pca: xr.DataArray, flagged: list[list[int]]) -> Figure:
    """PCA of every (layer, head) image key of two images; input-agnostic keys highlighted (Liu et al. Fig. 4)."""
    figure, axis = plt.subplots(figsize=(5.5, 5))
    flagged_set = {tuple(k) for k in flagged}
    markers = ["o", "s"]
    for index, sample in enumerate(pca.sample.values):
        points = pca.sel(sample=sample)
        for layer in points.layer.values:
            for head in points.kv_head.values:
                x, y = points.sel(layer=layer, kv_head=head).values
                agnostic = (int(layer), int(head)) in flagged_set
                axis.scatter(x, y, marker=markers[index % 2], s=60 if agnostic else 18,
                             color="#c44e52" if agnostic else "#8c8c8c", alpha=0.9 if agnostic else 0.5,
                             edgecolor="black" if agnostic else "none")
    for layer, head in flagged_set:  # the two images' points of one input-agnostic key
        xy = pca.sel(layer=layer, kv_head=head).values
        axis.plot(xy[:, 0], xy[:, 1], color="#c44e52", linewidth=0.8)
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="#8c8c8c", label=f"sample {s}")
               for m, s in zip(markers, pca.sample.values, strict=False)]
    handles.append(plt.Line2D([], [], marker="o", linestyle="", color="#c44e52", markeredgecolor="black",
                              label="input-agnostic key"))
    axis.legend(handles=handles)
    axis.set(xlabel="PC 1", ylabel="PC 2", title="Image keys of two images")
    figure.tight_layout()
    return figure


def layer_head_scores(scores: xr.DataArray, ylabel: str, title: str, baseline: float | None = None, *,
                      baseline_band: tuple[float, float] | None = None, baseline_label: str = "baseline",
                      held_out: dict | None = None, band: tuple[xr.DataArray, xr.DataArray] | None = None,
                      band_label: str = "95% interval") -> Figure:
    """Liu et al. Fig. 2 style: max over heads per layer (top), every head's score per layer (bottom). Optionally
    the baseline's 95% interval as a band, `held_out` (`heads.HeldOut.as_dict()`): the head chosen on the
    selection split, drawn at its layer with its report-split score and 95% interval, and `band`: every head's
    95% interval (low, high grids like `scores`), a band around the max (the interval of the head that is the max)
    and error bars on each head (`band_label` says over what)."""
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True, height_ratios=(1, 1.4))
    layers = scores.layer.values
    top.plot(layers, scores.max(KV_HEAD).values, marker="o", color="#4c72b0", label="max over heads")
    if band is not None:
        at_max = scores.fillna(-np.inf).argmax(KV_HEAD)
        top.fill_between(layers, band[0].isel({KV_HEAD: at_max}).values, band[1].isel({KV_HEAD: at_max}).values,
                         color="#4c72b0", alpha=0.18, linewidth=0, label=f"{band_label}, that head")
    if baseline is not None:
        top.axhline(baseline, color="#c44e52", linestyle="--", label=baseline_label)
    if baseline_band is not None and None not in baseline_band:
        top.axhspan(*baseline_band, color="#c44e52", alpha=0.15, linewidth=0)
    if held_out is not None and held_out.get("estimate") is not None:
        error = [[held_out["estimate"] - held_out["low"]], [held_out["high"] - held_out["estimate"]]]
        top.errorbar([held_out[LAYER]], [held_out["estimate"]], yerr=error, fmt="D", color="black", capsize=4,
                     label=f"head {held_out[KV_HEAD]}: chosen on the selection half, scored on the report half")
    top.set(ylabel=f"max {ylabel}", title=title)
    top.legend()
    for head in scores.kv_head.values:
        if band is None:
            bottom.scatter(layers, scores.sel(kv_head=head).values, s=14, label=f"head {head}")
            continue
        values = scores.sel(kv_head=head).values
        error = np.vstack([values - band[0].sel(kv_head=head).values, band[1].sel(kv_head=head).values - values])
        bottom.errorbar(layers, values, yerr=np.nan_to_num(error.clip(min=0)), fmt="o", markersize=3.5, capsize=2,
                        elinewidth=0.8, label=f"head {head}")
    bottom.plot(layers, scores.mean(KV_HEAD).values, color="black", linewidth=1, label="mean")
    bottom.set(xlabel=LAYER, ylabel=ylabel)
    if len(layers) <= 40:
        bottom.set_xticks([int(v) for v in layers])
    if scores.sizes[KV_HEAD] <= 8:
        bottom.legend(ncol=4, fontsize="small")
    figure.tight_layout()
    return figure


def per_layer_lines(series: dict[str, xr.DataArray], ylabel: str, title: str, xlabel: str = LAYER) -> Figure:
    """One line per named series over its single dimension (layer or stream)."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for label, values in series.items():
        dim = values.dims[0]
        style = "--" if "random" in label else "-"
        axis.plot(values[dim].values, values.values, style, marker="o", label=label)
    axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    axis.legend()
    figure.tight_layout()
    return figure


BASELINE_WORDS = ("random", "baseline", "uniform", "permuted", "chance")  # a series so named is drawn dashed


def interval_panels(panels: dict[str, dict[str, xr.Dataset]], ylabel: str, title: str, xlabel: str = LAYER) -> Figure:
    """One panel per entry, one line per named curve (`analyses.intervals.stack`: estimate, low, high over one
    dimension) with its 95% interval as a band; baselines (names with "random", "baseline", ...) dashed."""
    columns = len(panels) if len(panels) <= 3 else 2
    rows = -(-len(panels) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns + 1, 4 * rows), squeeze=False, sharey=True)
    for axis in axes.ravel()[len(panels):]:
        axis.set_visible(False)
    for axis, (panel, curves) in zip(axes.ravel(), panels.items(), strict=False):
        for label, curve in curves.items():
            (dim,) = curve["estimate"].dims
            x = curve[dim].values
            style = "--" if any(word in label for word in BASELINE_WORDS) else "-"
            (line,) = axis.plot(x, curve["estimate"].values, style, marker="o", markersize=3, label=label)
            axis.fill_between(x, curve["low"].values, curve["high"].values, color=line.get_color(), alpha=0.18,
                              linewidth=0)
            if np.issubdtype(np.asarray(x).dtype, np.integer) and len(x) <= 40:
                axis.set_xticks([int(v) for v in x])
        axis.set(xlabel=xlabel, title=panel)
        axis.legend(fontsize="small")
    for row in axes:
        row[0].set_ylabel(ylabel)
    figure.suptitle(f"{title} (bands: 95% intervals)")
    figure.tight_layout()
    return figure


def decoded_grid(image, tokens, words: list[str], title: str) -> Figure:
    """The image with each image token's decoded word written at its box centre (logit lens at one layer)."""
    figure, axis = plt.subplots(figsize=(7, 7 * image.height / max(image.width, 1)))
    axis.imshow(image)
    for (x, y), word in zip(tokens.centres * np.array([image.width, image.height]), words, strict=True):
        shown = "".join(c if c.isprintable() else "·" for c in word.strip())[:8]  # control bytes have no glyph
        axis.text(x, y, shown, ha="center", va="center", fontsize=6, color="white",
                  bbox={"facecolor": "black", "alpha": 0.45, "pad": 0.5, "linewidth": 0})
    axis.set_axis_off()
    axis.set_title(title)
    figure.tight_layout()
    return figure


def coherence_violins(coherence, title: str) -> Figure:
    """Per layer, violins of the pairwise label cosine of each key's top labels (blue) and of random labels
    (orange), means as black dots (Jung et al. Figs. 4-5)."""
    layers = sorted(coherence.layer.unique())
    figure, axis = plt.subplots(figsize=(max(6, 0.5 * len(layers) + 3), 4))
    for offset, (kind, colour) in zip((-0.18, 0.18), (("labels", "#4c72b0"), ("random", "#dd8452")), strict=True):
        data = [coherence[(coherence.layer == layer) & (coherence.kind == kind)].cosine.values for layer in layers]
        keep = [i for i, d in enumerate(data) if len(d)]
        if not keep:
            continue
        parts = axis.violinplot([data[i] for i in keep], positions=[i + offset for i in keep], widths=0.34,
                                showextrema=False)
        for body in parts["bodies"]:
            body.set_facecolor(colour)
            body.set_alpha(0.6)
        axis.scatter([i + offset for i in keep], [np.mean(data[i]) for i in keep], color="black", s=10, zorder=3)
        axis.plot([], [], color=colour, linewidth=6, label=kind)
    axis.set_xticks(range(len(layers)), [str(v) for v in layers])
    axis.set(xlabel=LAYER, ylabel="pairwise cosine of top-3 labels", title=title)
    axis.legend()
    figure.tight_layout()
    return figure


def layer_token_heatmap(values: xr.DataArray, kinds: np.ndarray, title: str) -> Figure:
    """(layer x token) heatmap of one sample's norm-based attention, token kinds marked underneath."""
    figure, (top, strip) = plt.subplots(2, 1, figsize=(10, 4), height_ratios=(1, 0.08), sharex=True)
    image = top.imshow(values.values, aspect="auto", cmap="magma", origin="lower", interpolation="nearest")
    top.set_yticks(range(values.sizes[LAYER]), [str(v) for v in values.layer.values])
    top.set(ylabel=LAYER, title=title)
    figure.colorbar(image, ax=[top, strip], label="||alpha f(x)||")
    strip.imshow(kinds[None, :], aspect="auto", cmap="tab10", vmin=-1, vmax=8, interpolation="nearest")
    strip.set_yticks([])
    strip.set_xlabel("token (colour: kind — text / special / image / newline)")
    return figure
