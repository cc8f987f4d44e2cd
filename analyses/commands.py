"""What each `python -m analyses NAME` does: run the analysis functions on a store, write results (JSON, and
xarray results as Zarr) and figures (PNG). Returns the paths written."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

import store.reader
from analyses import clustering, correspondence, cosine, figures, tables, token_norms, variance
from analyses.tokens import captured_samples, n_images, sample_annotation
from store.schema import ImagePart


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _write_xarray(path: Path, result: xr.Dataset | xr.DataArray) -> Path:
    dataset = result.to_dataset() if isinstance(result, xr.DataArray) else result
    dataset = dataset.assign_attrs({k: json.dumps(v, default=_json_default) if isinstance(v, dict | list) else v
                                    for k, v in dataset.attrs.items()})
    # fixed-width unicode has no Zarr v3 spec yet; variable-length strings do
    fixed = {name: var.astype(object) for name, var in dataset.variables.items() if var.dtype.kind == "U"}
    dataset = dataset.assign_coords({k: v for k, v in fixed.items() if k in dataset.coords})
    dataset = dataset.assign({k: v for k, v in fixed.items() if k not in dataset.coords})
    dataset.to_zarr(path, mode="w", consolidated=False)
    return path


def _title(ds: xr.Dataset) -> str:
    config = ds.attrs["capture_config"]
    return f"{config['model']} on {config['dataset']}"


def run_token_norms(store_path: Path, out: Path, **_: Any) -> list[Path]:
    ds = store.reader.open(store_path)
    norms = token_norms.hidden_norms(ds)
    by_kind = token_norms.mean_norm_by_kind(norms, ds.kind).compute()
    registers = token_norms.register_fraction(norms, ds.kind).compute()
    results = {
        "store": str(store_path),
        "streams": [int(s) for s in by_kind.stream.values],
        "mean_norm_by_kind": {str(k): [float(v) for v in by_kind.sel(kind=k).values] for k in by_kind.kind.values},
        "register_fraction": [float(v) for v in registers.values],
    }
    written = [_write_json(out / "token_norms.json", results)]
    written.append(out / "token_norms.png")
    figures.save(figures.token_norms(by_kind, registers, _title(ds)), written[-1])
    return written


def run_variance(store_path: Path, out: Path, array: str = "keys", part: str = "base", method: str = "otsu",
                 threshold: float | None = None, layer_groups: str | None = None, pca_samples: str | None = None,
                 **_: Any) -> list[Path]:
    ds = store.reader.open(store_path)
    image_part = None if part == "all" else ImagePart[part.upper()]
    values = variance.key_variance(ds, array, image_part).compute()
    chosen = variance.choose_threshold(values.values, method, threshold)
    groups = None
    if layer_groups:
        middle, late = (int(v) for v in layer_groups.split(","))
        groups = variance.layer_groups([int(v) for v in values.layer.values], (middle, late))
    keys = variance.input_agnostic_keys(values, chosen, groups)
    keys["store"] = str(store_path)
    if keys["otsu_and_valley_agree"] is not True:
        print("warning: Otsu's threshold and the histogram valley do not split the keys alike (or there is no valley):"
              " the variance distribution may not be bimodal", file=sys.stderr)
    written = [_write_xarray(out / "key_variance.zarr", values),
               variance.write_key_list(keys, out / "input_agnostic_keys.json")]
    written.append(out / "key_variance_hist.png")
    figures.save(figures.variance_histogram(values, chosen.as_dict()), written[-1])
    written.append(out / "key_variance_heatmap.png")
    figures.save(figures.variance_heatmap(values, chosen.value), written[-1])
    samples = [int(s) for s in pca_samples.split(",")] if pca_samples else [int(s) for s in captured_samples(ds)[:2]]
    pca = variance.key_pca(ds, tuple(samples), array, image_part)
    written.append(out / "key_pca.png")
    figures.save(figures.key_pca_scatter(pca, keys["all"]), written[-1])
    return written


def run_correspondence(store_path: Path, out: Path, array: str = "values", part: str = "auto", alpha: float = 0.1,
                       metric: str = "cosine", device: str = "auto", topk: int = 5, n_last: int = 7, radius: int = 12,
                       temperature: float = 0.1, **_: Any) -> list[Path]:
    ds = store.reader.open(store_path)
    written: list[Path] = []
    summary: dict[str, Any] = {"store": str(store_path), "array": array}
    pairs = correspondence.keypoint_pairs(ds)
    if pairs:
        pck = correspondence.semantic_correspondence(ds, pairs, array, part, alpha, metric, device=device)
        written.append(_write_xarray(out / "semantic_pck.zarr", pck))
        written.append(out / "semantic_pck.png")
        figures.save(figures.layer_head_scores(pck.pck, f"PCK@{alpha}", f"Semantic correspondence ({array}): "
                                               f"{_title(ds)}"), written[-1])
        summary["semantic"] = {**pck.attrs, "best": _best(pck.pck)}
        if any(pair.source_box is not None and pair.target_box is not None for pair in pairs):
            matched = correspondence.object_match_rate(ds, pairs, array, part, metric, device=device)
            written.append(out / "object_match.png")
            figures.save(figures.layer_head_scores(matched.match_rate, "object match rate",
                                                   f"Object-to-object correspondence ({array}): {_title(ds)}",
                                                   baseline=matched.chance),
                         written[-1])
            summary["object_match"] = {**matched.attrs, "best": _best(matched.match_rate),
                                       "mean": float(matched.match_rate.mean())}
    video_list = correspondence.videos(ds)
    if video_list:
        scores = correspondence.temporal_correspondence(ds, video_list, array, part, n_last=n_last, topk=topk,
                                                        radius=radius, temperature=temperature)
        written.append(_write_xarray(out / "temporal_jf.zarr", scores))
        written.append(out / "temporal_jf.png")
        figures.save(figures.layer_head_scores(scores.JF, "J&F mean", f"Temporal correspondence ({array}): "
                                               f"{_title(ds)}"), written[-1])
        summary["temporal"] = {**scores.attrs, "best": _best(scores.JF),
                               "best_J": _best(scores.J), "best_F": _best(scores.F)}
    if not pairs and not video_list:
        raise ValueError("the store has no keypoint pairs (2-image samples with 'keypoints') and no videos (frames with "
                         "'masks'): see analyses.correspondence and the manifest format in the README")
    written.insert(0, _write_json(out / "correspondence.json", summary))
    return written


def _best(scores: xr.DataArray) -> dict[str, Any]:
    flat = int(np.nanargmax(scores.values))
    li, hi = np.unravel_index(flat, scores.shape)
    return {"score": float(scores.values[li, hi]), "layer": int(scores.layer.values[li]),
            "kv_head": int(scores.kv_head.values[hi])}


def run_clustering(store_path: Path, out: Path, array: str = "values", part: str = "auto", k: int = 8,
                   presence: float = 0.05, image_fraction: float = 0.5, min_images: int = 2, **_: Any) -> list[Path]:
    from analyses.ground_truth import object_masks

    ds = store.reader.open(store_path)
    written: list[Path] = []
    summary: dict[str, Any] = {"store": str(store_path), "array": array, "co_segmentation": {}}
    image_sets = _image_sets_by_label(ds, min_images)
    results = []
    for label, samples in image_sets.items():
        result = clustering.co_segmentation(ds, samples, lambda s, label=label: object_masks(ds, s)[label], array, part,
                                            k, presence, image_fraction)
        results.append(result.jaccard.expand_dims(image_set=[label]))
        summary["co_segmentation"][label] = {"samples": samples, "best": _best(result.jaccard)}
    if results:
        jaccard = xr.concat(results, "image_set")
        written.append(_write_xarray(out / "co_segmentation.zarr", jaccard.rename("jaccard")))
        written.append(out / "co_segmentation.png")
        figures.save(figures.layer_head_scores(jaccard.mean("image_set"), "Jaccard (J_m)",
                                               f"Co-segmentation ({array}), mean of {len(results)} sets: {_title(ds)}"),
                     written[-1])
    labels = sorted({label for samples in _labels_per_sample(ds).values() for label in samples})
    if len(labels) >= 2:
        from analyses.label_embeddings import embed_labels

        summary["label_split"] = clustering.split_labels(labels, embed_labels(labels))
    written.insert(0, _write_json(out / "clustering.json", summary))
    return written


def _labels_per_sample(ds: xr.Dataset) -> dict[int, list[str]]:
    labels = {}
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        found = list(annotation.get("categories", [])) or [o["label"] for o in annotation.get("objects", [])]
        labels[int(sample)] = sorted(set(found))
    return labels


def _image_sets_by_label(ds: xr.Dataset, min_images: int) -> dict[str, list[int]]:
    """Co-segmentation sets: the single-image samples sharing each label (at least `min_images` of them)."""
    sets: dict[str, list[int]] = {}
    for sample, labels in _labels_per_sample(ds).items():
        if n_images(ds, sample) != 1:
            continue
        for label in labels:
            sets.setdefault(label, []).append(sample)
    return {label: samples for label, samples in sorted(sets.items()) if len(samples) >= min_images}


def run_cosine(store_paths: list[Path], out: Path, text: str = "after_image", labels: str | None = None,
               **_: Any) -> list[Path]:
    names = labels.split(",") if labels else []
    curves, summaries = {}, {}
    for index, path in enumerate(store_paths):
        ds = store.reader.open(path)
        config = ds.attrs["capture_config"]
        label = names[index] if index < len(names) else f"{config['model']} / {config.get('prompt_set') or 'prompt'}"
        curve = cosine.cosine_curve(ds, text).compute()
        summary = cosine.summarise(curve)
        curves[label] = summary
        summaries[label] = {"store": str(path), "stream": summary.stream.values.tolist(),
                            **{k: summary[k].values.tolist() for k in ("mean", "std", "q25", "q75", "n_samples")}}
    written = [_write_json(out / "cosine_curves.json", {"text_tokens": text, "curves": summaries})]
    combined = xr.concat([s.expand_dims(curve=[k]) for k, s in curves.items()], "curve")
    written.append(_write_xarray(out / "cosine_curves.zarr", combined))
    written.append(out / "cosine_curves.png")
    figures.save(figures.cosine_curves(curves), written[-1])
    return written


def _captions(ds: xr.Dataset, samples: list[int]) -> dict[int, list[str]]:
    return {s: sample_annotation(ds, s).get("captions", []) for s in samples}


def run_logit_lens(store_path: Path, out: Path, k: int = 5, layer: int | None = None, sample: int = 0,
                   **_: Any) -> list[Path]:
    from PIL import Image

    from analyses import lens as logit_lens
    from analyses.ground_truth import object_masks

    ds = store.reader.open(store_path)
    lens = logit_lens.Lens.from_store(store.reader.open_lens(store_path), ds.attrs["capture_config"]["compute_dtype"])
    samples = [int(s) for s in captured_samples(ds) if n_images(ds, s) >= 1]
    streams = ds.stream.values
    decoded = logit_lens.image_top_tokens(ds, lens, samples, k=k)
    masks = {}
    for s in samples:
        try:
            masks[s] = object_masks(ds, s)
        except (FileNotFoundError, KeyError):
            masks[s] = {}
    hits = logit_lens.object_hit_rate(decoded, lens, masks, streams)
    words = logit_lens.caption_scores(decoded, lens, _captions(ds, samples), streams)
    result = xr.merge([hits, words]).assign_attrs(hits.attrs)
    written = [_write_xarray(out / "logit_lens.zarr", result)]
    top = {str(s): {str(int(st)): [[lens.vocabulary[i] for i in row] for row in decoded[s][1][si]]
                    for si, st in enumerate(streams)} for s in samples[:20]}
    summary = {"store": str(store_path), "k": k, "best_stream_object_hits": hits.attrs["best_stream"],
               "hit_rate": hits.hit_rate.values.tolist(), "precision": words.precision.values.tolist(),
               "recall": words.recall.values.tolist(), "streams": streams.tolist(),
               "n_object_tokens": hits.attrs["n_object_tokens"], "top_tokens_first_samples": top}
    written.append(_write_json(out / "logit_lens.json", summary))
    written.append(out / "logit_lens_scores.png")
    figures.save(figures.per_layer_lines({"object-token hit rate": hits.hit_rate, "caption precision": words.precision,
                                          "caption recall": words.recall}, "score", f"Logit lens: {_title(ds)}",
                                         xlabel="residual stream"), written[-1])
    shown = sample if sample in decoded else samples[0]
    stream = int(layer) if layer is not None else int(hits.attrs["best_stream"]) if hits.attrs["best_stream"] >= 0 \
        else int(streams[len(streams) // 2])
    tokens, ids = decoded[shown]
    image = Image.open(str(ds.image_path.values[shown, 0])).convert("RGB")
    labels = [lens.vocabulary[i] for i in ids[list(streams).index(stream), :, 0]]
    written.append(out / f"decoded_grid_sample{shown}_stream{stream}.png")
    figures.save(figures.decoded_grid(image, tokens, labels, f"Top token per image token, stream {stream}"), written[-1])
    return written


def run_ffn_memory(store_path: Path, out: Path, n_keys: int = 3, min_cosine: float = 0.5, **_: Any) -> list[Path]:
    from analyses import ffn_memory
    from analyses.label_embeddings import embed_labels
    from analyses.lens import Lens

    ds = store.reader.open(store_path)
    lens_ds = store.reader.open_lens(store_path)
    lens = Lens.from_store(lens_ds, ds.attrs["capture_config"]["compute_dtype"])
    prefixes = ffn_memory.prefix_labels(ds)
    keys = ffn_memory.top_keys(ds, prefixes, n_keys)
    table = ffn_memory.key_labels(keys, list(prefixes.label))
    labels = sorted(prefixes.label.unique())
    embeddings = dict(zip(labels, embed_labels(labels), strict=True))
    coherence = ffn_memory.label_coherence(table, embeddings)
    agreement = ffn_memory.value_agreement(keys, prefixes, lens, lens_ds.down_proj_weight, embeddings)
    pairs = ffn_memory.coherent_pairs(table, coherence, lens, lens_ds.down_proj_weight, min_cosine)
    written = [out / "key_labels.csv", out / "label_coherence.csv"]
    table.to_csv(written[0], index=False)
    coherence.to_csv(written[1], index=False)
    written.append(_write_xarray(out / "value_agreement.zarr", agreement))
    written.append(out / "coherent_pairs.md")
    written[-1].write_text(tables.markdown(pairs) if len(pairs) else "no coherent key-value pairs\n")
    means = coherence.groupby(["layer", "kind"]).cosine.mean().unstack() if len(coherence) else None
    written.append(_write_json(out / "ffn_memory.json", {
        "store": str(store_path), "n_prefixes": len(prefixes), "n_keys_per_layer": n_keys,
        "unique_keys_per_layer": table.groupby("layer").key.nunique().to_dict(),
        "mean_label_cosine": means.to_dict() if means is not None else {},
        "agreement": agreement.agreement.values.tolist(), "agreement_random": agreement.agreement_random.values.tolist(),
        "cosine": agreement.cosine.values.tolist(), "cosine_random": agreement.cosine_random.values.tolist(),
        "n_coherent_pairs": len(pairs),
    }))
    if len(coherence):
        written.append(out / "label_coherence.png")
        figures.save(figures.coherence_violins(coherence, f"Label coherence of FFN keys: {_title(ds)}"), written[-1])
    written.append(out / "value_agreement.png")
    figures.save(figures.per_layer_lines({"agreement": agreement.agreement, "agreement (random values)":
                                          agreement.agreement_random, "cosine": agreement.cosine,
                                          "cosine (random values)": agreement.cosine_random},
                                         "rate / cosine", f"FFN values vs true labels: {_title(ds)}"), written[-1])
    return written


def run_norm_attention(store_path: Path, out: Path, sample: int = 0, **_: Any) -> list[Path]:
    from analyses import norm_attention

    ds = store.reader.open(store_path)
    result = norm_attention.norm_based_attention(ds, store.reader.open_lens(store_path), [int(s) for s in captured_samples(ds)])
    shares = norm_attention.by_kind(result, ds.kind)
    written = [_write_xarray(out / "norm_attention.zarr", result), _write_xarray(out / "norm_attention_by_kind.zarr", shares)]
    written.append(_write_json(out / "norm_attention.json", {
        "store": str(store_path), "kinds": shares.kind.values.tolist(), "layers": shares.layer.values.tolist(),
        "norm_share": shares.norm_share.values.tolist(), "weight_share": shares.weight_share.values.tolist()}))
    n = int(ds.n_tokens.values[sample])
    written.append(out / f"norm_attention_sample{sample}.png")
    figures.save(figures.layer_token_heatmap(result.norm.sel(sample=sample).isel(token=slice(0, n)),
                                             ds.kind.values[sample, :n], f"Norm-based attention of the last token: "
                                             f"{_title(ds)}, sample {sample}"), written[-1])
    written.append(out / "norm_attention_by_kind.png")
    series = {f"{kind} (norm)": shares.norm_share.sel(kind=kind) for kind in ("image", "text")}
    series.update({f"{kind} (weight)": shares.weight_share.sel(kind=kind) for kind in ("image", "text")})
    figures.save(figures.per_layer_lines(series, "share of the last position's attention", "Norm vs weight"), written[-1])
    return written


def run_probing(store_path: Path, out: Path, array: str = "values", part: str = "auto", n_support: int = 2,
                text_store: Path | None = None, **_: Any) -> list[Path]:
    from analyses import probing
    from analyses.ground_truth import object_masks

    ds = store.reader.open(store_path)
    written: list[Path] = []
    summary: dict[str, Any] = {"store": str(store_path), "array": array}
    sets = _image_sets_by_label(ds, n_support + 1)
    linear = []
    for label, samples in sets.items():
        result = probing.linear_probe_segmentation(ds, samples[:n_support], samples[n_support:],
                                                   lambda s, label=label: object_masks(ds, s)[label], array, part)
        linear.append(result.miou.expand_dims(label=[label]))
    if linear:
        miou = xr.concat(linear, "label")
        written.append(_write_xarray(out / "linear_probe.zarr", miou.rename("miou")))
        summary["linear_probe"] = {"labels": list(sets), "best": _best(miou.mean("label"))}
        written.append(out / "linear_probe.png")
        figures.save(figures.layer_head_scores(miou.mean("label"), "mIoU", f"Few-shot linear probe ({array}): "
                                               f"{_title(ds)}"), written[-1])
    if text_store is not None:
        text_ds = store.reader.open(text_store)
        by_label = {str(t).removeprefix("category:"): i for i, t in enumerate(text_ds.sample_id.values)}
        results = []
        for label, samples in sets.items():
            if label in by_label:
                result = probing.text_segmentation(ds, samples, text_ds, lambda s, i=by_label[label]: i,
                                                   lambda s, label=label: object_masks(ds, s)[label], array, part)
                results.append(result.miou.expand_dims(label=[label]))
        if results:
            miou = xr.concat(results, "label")
            written.append(_write_xarray(out / "text_segmentation.zarr", miou.rename("miou")))
            summary["text_segmentation"] = {"labels": miou.label.values.tolist(), "best": _best(miou.mean("label"))}
            written.append(out / "text_segmentation.png")
            figures.save(figures.layer_head_scores(miou.mean("label"), "mIoU", f"Text-token segmentation ({array})"),
                         written[-1])
    trials = probing.choice_trials(ds)
    if trials:
        accuracy = probing.paired_choice(ds, trials, array, part)
        written.append(_write_xarray(out / "paired_choice.zarr", accuracy))
        summary["paired_choice"] = {"n_trials": len(trials), "best": _best(accuracy.accuracy)}
        written.append(out / "paired_choice.png")
        figures.save(figures.layer_head_scores(accuracy.accuracy, "accuracy", f"Paired choice ({array})"), written[-1])
    if not written:
        raise ValueError("nothing to probe: no label with enough images for a support/query split, no --text-store, "
                         "no choice trials")
    written.insert(0, _write_json(out / "probing.json", summary))
    return written
