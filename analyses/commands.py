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
from analyses import clustering, correspondence, cosine, figures, token_norms, variance
from analyses.tokens import captured_samples
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
        annotation = json.loads(str(ds.annotation.values[sample]) or "{}")
        found = list(annotation.get("categories", [])) or [o["label"] for o in annotation.get("objects", [])]
        labels[int(sample)] = sorted(set(found))
    return labels


def _image_sets_by_label(ds: xr.Dataset, min_images: int) -> dict[str, list[int]]:
    """Co-segmentation sets: the single-image samples sharing each label (at least `min_images` of them)."""
    sets: dict[str, list[int]] = {}
    for sample, labels in _labels_per_sample(ds).items():
        if int((ds.image_height.values[sample] > 0).sum()) != 1:
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
