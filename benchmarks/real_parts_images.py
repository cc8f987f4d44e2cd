"""Real-parts benchmark, image side: correspondence on real features, key variance, storage of real activations.

The random-weight control of `correspondence` is `dino-smollm2-llava`'s own config initialised by transformers
(seed 0) and saved with the real processor: same shape, same tokens, no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import ml_dtypes
import numpy as np
import xarray as xr
from real_parts_common import REAL, capture, show, write_manifest

from analyses import figures, intervals
from analyses.correspondence import keypoint_hits, keypoint_pairs
from analyses.output import Output
from capture.datasets import open_dataset
from store.schema import (
    FFN_TOPK_INDEX,
    FFN_TOPK_VALUE,
    HIDDEN,
    KEYS,
    KV_HEAD,
    LAYER,
    STREAM,
    VALUES,
    TokenSet,
)

RANDOM_SEED = 0
ALPHA = 0.1


def random_model_dir(work: Path) -> Path:
    """`dino-smollm2-llava`'s architecture with transformers' random initialisation (seed 0), saved once."""
    import torch
    from transformers import AutoConfig, LlavaForConditionalGeneration

    from capture.real_parts.assemble import BUILD_FILE, ensure_real_parts_model

    real, out = ensure_real_parts_model(REAL), work / "random-dino-smollm2-llava"
    if (out / "config.json").is_file():
        return out
    torch.manual_seed(RANDOM_SEED)
    model = LlavaForConditionalGeneration(AutoConfig.from_pretrained(real)).float().eval()
    model.save_pretrained(out)
    for path in real.iterdir():  # the processor and tokenizer files; not the weights, config or build record
        if path.is_file() and not path.name.startswith("model") and path.name not in ("config.json", BUILD_FILE):
            shutil.copyfile(path, out / path.name)
    return out


def grouped_hits(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Per group ('stereo', 'quokka'): (keypoint, layer, kv_head) 1 where the value token's nearest target token
    lands within PCK@ALPHA (`analyses.correspondence.keypoint_hits`)."""
    pairs = keypoint_pairs(ds)
    hits = keypoint_hits(ds, pairs, VALUES, alpha=ALPHA, device="cpu")
    quokka = np.array([str(ds.sample_id.values[pair.source[0]]).startswith("quokka") for pair in pairs])
    in_quokka = quokka[hits.pair.values]
    correct = hits.correct.values.astype(np.float64)
    return {group: correct[keep] for group, keep in (("stereo", ~in_quokka), ("quokka", in_quokka)) if keep.any()}


def pck_table(hits: np.ndarray, layers: np.ndarray, heads: np.ndarray) -> xr.Dataset:
    """PCK per (layer, kv_head) with a bootstrap interval over keypoints: estimate, low, high, n."""
    rows = [intervals.stack([intervals.bootstrap_mean(hits[:, li, hi]) for hi in range(len(heads))], KV_HEAD, heads)
            for li in range(len(layers))]
    return xr.concat(rows, dim=xr.DataArray(layers, dims=LAYER, name=LAYER))


def correspondence_step(work: Path, figure_dir: Path, quick: bool) -> tuple[str, list[str], dict]:
    """Value-token PCK@0.1 per (layer, KV head): real model against its random-weight twin."""
    options = dict(dataset="photos", subset="pairs", tokens=TokenSet.IMAGE, ffn_topk=0, limit=2 if quick else None)
    stores = {"real": capture(work / "pairs-real.zarr", **options),
              "random": capture(work / "pairs-random.zarr", model=str(random_model_dir(work)), **options)}
    hits = {name: grouped_hits(ds) for name, ds in stores.items()}
    layers, heads = stores["real"][LAYER].values, np.arange(stores["real"].sizes[KV_HEAD])
    out, summary = Output(figure_dir), {"alpha": ALPHA, "array": VALUES, "metric": "cosine"}
    lines = [f"PCK@{ALPHA} of value tokens (cosine nearest neighbour), per (layer, KV head); 95% CI: bootstrap over "
             "keypoints. 'best' is chosen on the same keypoints (optimistic); 'mean' averages every (layer, head).", "",
             "| pairs | keypoints | real: best (layer, head) | random at that unit | real - random there (paired) | "
             "random: best | real: mean over units | random: mean over units |", "|---|---|---|---|---|---|---|---|"]
    panels = {}
    for group in hits["real"]:
        real, rand = hits["real"][group], hits["random"][group]
        tables = {name: pck_table(h, layers, heads) for name, h in (("real", real), ("random", rand))}
        li, hi = np.unravel_index(int(np.argmax(tables["real"].estimate.values)), tables["real"].estimate.shape)
        ri, rh = np.unravel_index(int(np.argmax(tables["random"].estimate.values)), tables["random"].estimate.shape)
        best = intervals.bootstrap_mean(real[:, li, hi])
        at = intervals.bootstrap_mean(rand[:, li, hi])
        difference = intervals.paired_difference(real[:, li, hi], rand[:, li, hi])
        means = {name: intervals.bootstrap_mean(h.mean(axis=(1, 2))) for name, h in (("real", real), ("random", rand))}
        lines.append(f"| {group} | {len(real)} | ({layers[li]}, {hi}): {show(best)} | {show(at)} | {show(difference)} "
                     f"| ({layers[ri]}, {rh}): {show(intervals.bootstrap_mean(rand[:, ri, rh]))} | "
                     f"{show(means['real'])} | {show(means['random'])} |")
        panels[f"{group} ({len(real)} keypoints)"] = {
            f"{name}: mean over KV heads": intervals.stack([intervals.bootstrap_mean(h[:, i].mean(axis=1))
                                                           for i in range(len(layers))], LAYER, layers)
            for name, h in (("real", real), ("random weights", rand))}
        for name, table in tables.items():
            out.figure(f"pck_{group}_{name}.png", figures.layer_head_scores(
                table.estimate, f"PCK@{ALPHA}", f"{group} pairs, value tokens, {name} {REAL}"))
        summary[group] = {"n_keypoints": len(real), "best_real": {LAYER: int(layers[li]), KV_HEAD: int(hi),
                          **best.as_dict()}, "random_at_best_real": at.as_dict(),
                          "paired_difference": difference.as_dict(),
                          "best_random": {LAYER: int(layers[ri]), KV_HEAD: int(rh)},
                          **{f"mean_{name}": value.as_dict() for name, value in means.items()},
                          "pck_real": tables["real"].estimate.values.tolist(),
                          "pck_random": tables["random"].estimate.values.tolist()}
    out.figure("pck_real_vs_random.png", figures.interval_panels(
        panels, f"PCK@{ALPHA}", f"Value-token correspondence: {REAL} vs random weights"))
    return "Real parts: correspondence on real features (value-token PCK)", lines, summary


N_SCENES = 16  # synthetic scenes asked for next to the 19 photos (the default synthetic-coco set holds 12)


def variance_step(work: Path, figure_dir: Path, quick: bool) -> tuple[str, list[str], dict]:
    """Liu et al.'s key variance (pre-RoPE image keys, base view) over photos + synthetic scenes, dip test."""
    from analyses.variance import ALL_FLAGGED, choose_threshold, input_agnostic_keys, key_variance
    from store.schema import KEYS_PREROPE, ImagePart

    photos = open_dataset("photos", None, None, None, subset="photos").records[: 3 if quick else None]
    scenes = open_dataset("synthetic-coco", None, None, 3 if quick else N_SCENES).records
    manifest = write_manifest(work / "variance" / "manifest.jsonl",
                              [{"id": f"{kind}-{record.sample_id}", "image": str(record.image_paths[0])}
                               for kind, records in (("photo", photos), ("scene", scenes)) for record in records])
    ds = capture(work / "variance.zarr", dataset="manifest", data_root=manifest, keys_prerope=True, tokens=TokenSet.IMAGE,
                 ffn_topk=0)
    values = key_variance(ds, KEYS_PREROPE, ImagePart.BASE).compute()
    chosen = choose_threshold(values.values)
    keys = input_agnostic_keys(values, chosen)
    forced = {method: input_agnostic_keys(values, choose_threshold(values.values, method))
              for method in ("valley", "otsu")}
    out = Output(figure_dir)
    out.figure("key_variance_hist.png", figures.variance_histogram(values, chosen.as_dict()))
    out.figure("key_variance_heatmap.png", figures.variance_heatmap(
        values, -float("inf") if chosen.value is None else chosen.value))
    flat = values.stack(unit=(LAYER, KV_HEAD))
    order = np.argsort(flat.values)
    lowest = [(int(flat[LAYER].values[i]), int(flat[KV_HEAD].values[i]), float(flat.values[i])) for i in order[:5]]
    test = chosen.bimodality
    lines = [f"{len(photos)} photos + {len(scenes)} synthetic scenes, pre-RoPE image keys of the base view, "
             f"{values.sizes[LAYER]} layers x {values.sizes[KV_HEAD]} KV heads = {values.size} keys.", "",
             "| measure | value |", "|---|---|",
             f"| Hartigan's dip test | dip {test.dip:.4f}, p = {test.p_value:.3g} (n = {test.n} keys): "
             f"{'bimodal' if test.bimodal else 'not bimodal'} at 0.05 |",
             f"| keys flagged input-agnostic (automatic: valley only if bimodal) | {len(keys[ALL_FLAGGED])} |",
             f"| flagged if a split were forced: valley / Otsu | {len(forced['valley'][ALL_FLAGGED])} / "
             f"{len(forced['otsu'][ALL_FLAGGED])} |",
             f"| variance: min / median / max | {float(values.min()):.3g} / {float(values.median()):.3g} / "
             f"{float(values.max()):.3g} |",
             "| lowest five (layer, head): variance | "
             + ", ".join(f"({layer}, {head}): {v:.3g}" for layer, head, v in lowest) + " |"]
    summary = {"n_photos": len(photos), "n_scenes": len(scenes), "threshold": chosen.as_dict(),
               "input_agnostic_keys": keys, "forced": {m: {"threshold": k["threshold"]["value"], "flagged": k[ALL_FLAGGED]}
                                                        for m, k in forced.items()},
               "variance": values.values.tolist(), "lowest": lowest}
    return "Real parts: key variance across photos and scenes (Liu et al.)", lines, summary


CODECS = (("none", None), ("zstd", None), ("zstd", 7), ("zstd", 3))  # (compression, keep_mantissa_bits)
CONTROL = "tiny-llava-1.5"  # the random tiny model of the same family
ACTIVATIONS = (HIDDEN, KEYS, VALUES, FFN_TOPK_VALUE, FFN_TOPK_INDEX)


def array_bytes(path: Path) -> int:
    """Bytes on disk of the activation arrays of a store (the lens group and token tables left out)."""
    return sum(f.stat().st_size for name in ACTIVATIONS for f in (path / name).rglob("*") if f.is_file())


def largest_relative_error(reference: xr.Dataset, other: xr.Dataset) -> float:
    """max |a - b| / |a| over the nonzero finite floats of hidden, keys and values."""
    worst = 0.0
    for name in ACTIVATIONS[:3]:
        a = np.asarray(reference[name].values, np.float64)
        b = np.asarray(other[name].values, np.float64)
        keep = np.isfinite(a) & (a != 0)
        worst = max(worst, float((np.abs(a - b)[keep] / np.abs(a[keep])).max()))
    return worst


def massive_activations(ds: xr.Dataset) -> xr.Dataset:
    """Per stream: the largest |hidden| over the stored tokens, the median |hidden|, and the d_model index of the
    largest."""
    hidden = np.abs(np.asarray(ds.hidden.values, np.float32))  # (sample, stream, token, d_model), NaN pads
    flat = np.moveaxis(hidden, 1, 0).reshape(hidden.shape[1], -1, hidden.shape[-1])
    largest = np.nanmax(flat, axis=(1, 2))
    where = [int(np.nanargmax(np.nanmax(stream, axis=0))) for stream in flat]
    return xr.Dataset({"max": (STREAM, largest), "median": (STREAM, np.nanmedian(flat.reshape(len(flat), -1), 1)),
                       "dim": (STREAM, where)}, coords={STREAM: np.arange(len(flat))})


def _massive_cell(massive: xr.Dataset, stream: int) -> str:
    """'max (dim) / median' of one stream, '-' past the model's last stream."""
    if stream >= massive.sizes[STREAM]:
        return "-"
    point = massive.isel({STREAM: stream})
    return f"{float(point['max']):.1f} ({int(point['dim'])}) / {float(point['median']):.3f}"


def bf16_effect(ds: xr.Dataset, lens_path: Path) -> dict:
    """What rounding fp32 activations to bf16 (bf16 storage) changes: the largest relative error of hidden, and
    the logit lens's top-1 at the last stream of the sentences (positions changed, largest logit change)."""
    import store.reader
    from analyses.lens import Lens

    hidden = np.asarray(ds.hidden.values, np.float32)
    keep = np.isfinite(hidden) & (hidden != 0)
    rounded = hidden.astype(ml_dtypes.bfloat16).astype(np.float32)
    text = store.reader.open(lens_path)
    lens = Lens.from_store(store.reader.open_lens(lens_path), "float32")
    changed = positions = 0
    logit_change = 0.0
    lasts = np.asarray(text.hidden.isel(stream=-1, token=slice(0, int(text.n_tokens.max()))).values, np.float32)
    for s, n in enumerate(text.n_tokens.values):
        last = lasts[s, :n]
        exact, coarse = lens.logits(last), lens.logits(last.astype(ml_dtypes.bfloat16).astype(np.float32))
        changed += int((exact.argmax(-1) != coarse.argmax(-1)).sum())
        positions += int(n)
        logit_change = max(logit_change, float(np.abs(exact - coarse).max()))
    return {"hidden_max_relative_error": float((np.abs(hidden - rounded)[keep] / np.abs(hidden[keep])).max()),
            "bound": 2.0 ** -8, "lens_top1_changed": changed, "lens_positions": positions,
            "lens_max_logit_change": logit_change}


def storage_step(work: Path, figure_dir: Path, quick: bool) -> tuple[str, list[str], dict]:
    """Bytes per codec and their largest relative error, real vs random tiny; massive activations; bf16."""
    from real_parts_text import text_store

    n = 1 if quick else 2
    sizes, errors, stores = {}, {}, {}
    for model in (REAL, CONTROL):
        for compression, bits in CODECS:
            path = work / f"storage-{model}-{compression}-{bits}.zarr"
            ds = capture(path, model=model, dataset="photos", subset="photos", limit=n, batch_size=n,
                         compression=compression, keep_mantissa_bits=bits)  # one shard: no empty sample slots
            stores[model, compression, bits] = ds
            sizes[model, compression, bits] = array_bytes(path) / n
            errors[model, compression, bits] = largest_relative_error(stores[model, "none", None], ds)
    massive = {model: massive_activations(stores[model, "none", None]) for model in (REAL, CONTROL)}
    fig = figures.per_layer_lines({f"{m}: max |hidden|": massive[m]["max"] for m in massive} |
                                  {f"{m}: median |hidden|": massive[m]["median"] for m in massive},
                                  "|hidden| (log scale)", f"Massive activations ({n} photos)", xlabel=STREAM)
    fig.axes[0].set_yscale("log")
    Output(figure_dir).figure("massive_activations.png", fig)
    bf16 = bf16_effect(stores[REAL, "none", None], text_store(work, quick))
    lines = [f"{n} photos per store, fp32 compute and storage, all layers, FFN top-16; bytes of the activation "
             "arrays (hidden, keys, values, FFN top-k) per sample; error: largest |a - b| / |a| against codec none.",
             "", "| codec | real MB / sample | real ratio | real largest rel. error | tiny random MB / sample | "
             "tiny ratio | tiny largest rel. error |", "|---|---|---|---|---|---|---|"]
    for compression, bits in CODECS:
        cells = []
        for model in (REAL, CONTROL):
            size, base = sizes[model, compression, bits], sizes[model, "none", None]
            cells.append(f"{size / 1e6:.2f} | {size / base:.3f} | {errors[model, compression, bits]:.2e}")
        name = compression + (f", {bits} mantissa bits (bound {2.0 ** -(bits + 1):.1e})" if bits is not None else "")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| stream | " + " | ".join(f"{m}: max abs (dim) / median abs" for m in massive) + " |",
              "|---|" + "---|" * len(massive)]
    real = massive[REAL]
    for stream in sorted({0, 1, 2, 4, 8, 16, int(real["max"].argmax()), int(real.sizes[STREAM]) - 1}):
        cells = [_massive_cell(v, stream) for v in massive.values()]
        lines.append(f"| {stream} | " + " | ".join(cells) + " |")
    lines += ["", f"bf16 storage of the fp32 activations: largest relative error of hidden "
              f"{bf16['hidden_max_relative_error']:.2e} (round to nearest with 7 stored mantissa bits: at most 2^-8 = "
              f"{2 ** -8:.2e}); the "
              f"logit lens's top-1 at the last stream of the sentences changes at {bf16['lens_top1_changed']} of "
              f"{bf16['lens_positions']} positions (largest logit change {bf16['lens_max_logit_change']:.3g})."]
    summary = {"bytes_per_sample": {f"{m}|{c}|{b}": v for (m, c, b), v in sizes.items()},
               "largest_relative_error": {f"{m}|{c}|{b}": v for (m, c, b), v in errors.items()},
               "massive": {m: {k: v.values.tolist() for k, v in ds.items()} for m, ds in massive.items()},
               "bf16": bf16}
    return "Real parts: storage of real activations vs the random tiny model", lines, summary
