"""Mean input embeddings for mean ablation, read from a store (stream 0 = the decoder's input embeddings)."""

from __future__ import annotations

import numpy as np
import torch

import store.reader
from analyses.commands.options import missing_array_message
from capture.loading import LoadedModel
from interventions.spec import InterventionSpec, SpecError
from store.schema import HIDDEN, SAMPLE, TOKEN, CaptureConfig, SampleStatus, TokenKind, TokenSet

KINDS = {TokenSet.IMAGE: [TokenKind.IMAGE], TokenSet.TEXT: [TokenKind.TEXT, TokenKind.SPECIAL]}


def store_mean(path, over: str) -> torch.Tensor:
    """Mean (d_model,) float32 of stream 0 over every captured token of kind `over` (image or text)."""
    if over not in KINDS:
        raise SpecError(f"mean_over {over!r}: a store mean is taken over image or text tokens")
    try:
        ds = store.reader.open(path)
    except (FileNotFoundError, ValueError, KeyError) as error:
        raise SpecError(f"mean_from {path}: not a readable activation store ({error})") from None
    if HIDDEN not in ds:
        raise SpecError(f"mean_from {missing_array_message(path, CaptureConfig.of(ds.attrs), [HIDDEN])}")
    if 0 not in ds.stream.values:
        raise SpecError(f"mean_from {path}: the store has no stream 0 (the input embeddings): capture with --layers including 0")
    chosen = ds.kind.isin(KINDS[over]) & (ds.status == SampleStatus.CAPTURED)
    hidden = ds.hidden.sel(stream=0).astype(np.float64)
    mean = hidden.where(chosen).sum((SAMPLE, TOKEN)) / chosen.sum()
    return torch.from_numpy(mean.values.astype(np.float32))


def ablation_means(specs: list[InterventionSpec], loaded: LoadedModel) -> dict[tuple[str, str], torch.Tensor]:
    """Every (store, token set) mean the specs' ablations need, checked against the model's width."""
    width = loaded.adapter.text_config(loaded.config).hidden_size
    means = {}
    for spec in specs:
        for ablation in spec.ablate:
            key = (str(ablation.mean_from), ablation.mean_over)
            if key not in means:
                means[key] = store_mean(ablation.mean_from, ablation.mean_over)
                if means[key].shape != (width,):
                    raise SpecError(f"mean_from {ablation.mean_from}: d_model {means[key].shape[0]} differs from the "
                                    f"model's {width}")
    return means
