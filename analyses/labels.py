"""The labels of a store's samples, read from their annotations, and the image sets that share a label (the sets
co-segmentation clusters together and the few-shot probes split into support and query images)."""

from __future__ import annotations

import xarray as xr

from analyses.tokens import captured_samples, n_images, sample_annotation
from store import annotation as ann


def labels_per_sample(ds: xr.Dataset) -> dict[int, list[str]]:
    """Sorted distinct labels of each captured sample: its `categories`, else its objects' labels."""
    labels = {}
    for sample in captured_samples(ds):
        annotation = sample_annotation(ds, sample)
        found = list(annotation.get(ann.CATEGORIES, [])) or ann.object_labels(annotation)
        labels[int(sample)] = sorted(set(found))
    return labels


def image_sets_by_label(ds: xr.Dataset, min_images: int) -> dict[str, list[int]]:
    """The single-image samples sharing each label (labels with at least `min_images` of them), by label."""
    sets: dict[str, list[int]] = {}
    for sample, labels in labels_per_sample(ds).items():
        if n_images(ds, sample) != 1:
            continue
        for label in labels:
            sets.setdefault(label, []).append(sample)
    return {label: samples for label, samples in sorted(sets.items()) if len(samples) >= min_images}
