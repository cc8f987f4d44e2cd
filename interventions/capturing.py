"""Captures of an intervened model (`python -m capture --intervention SPEC`): a spec file as capture's
`Intervention` (resolved per sample, applied around its forward pass, recorded in the capture config)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

from capture.errors import CaptureError
from capture.loading import LoadedModel
from capture.options import CaptureOptions
from capture.run import run_capture
from capture.summary import CaptureSummary
from interventions.apply import SamplePlan, intervened, plan_sample
from interventions.means import ablation_means
from interventions.regions import RegionError
from interventions.spec import InterventionSpec, SpecError, bind_layers, load_spec
from interventions.token_sets import Sample, TokenSetError
from store.token_table import TokenTable


class SpecIntervention:
    """An intervention spec with the mean vectors its ablations need."""

    def __init__(self, spec: InterventionSpec, means: dict[tuple[str, str], torch.Tensor]):
        self.spec, self.means = spec, means

    def record(self) -> dict[str, Any]:
        return self.spec.as_dict()

    def plan(self, table: TokenTable, annotation: dict[str, Any], image_sizes: list[tuple[int, int]],
             sample_id: str) -> tuple[SamplePlan, TokenTable]:
        try:
            return plan_sample(self.spec, Sample(table, annotation, image_sizes, sample_id=sample_id), self.means)
        except (RegionError, TokenSetError) as error:
            raise CaptureError(f"sample {sample_id}: {error}") from None

    def applied(self, model: LoadedModel, plan: SamplePlan) -> AbstractContextManager[None]:
        return intervened(model.adapter, model.model, plan)


def load_spec_intervention(model: LoadedModel, options: CaptureOptions) -> SpecIntervention:
    """The spec file of `options.intervention`, checked before any weight is loaded (CaptureError, one line)."""
    try:
        spec = bind_layers(load_spec(Path(options.intervention)),
                           model.adapter.text_config(model.config).num_hidden_layers)
        means = ablation_means([spec], model)
    except SpecError as error:
        raise CaptureError(str(error)) from None
    if spec.knockout and options.attention_last:
        raise CaptureError("--attention-last recomputes attention rows without the knockout mask: drop one of them")
    if spec.needs_norms:
        raise CaptureError("the register token set needs each sample's input-embedding norms, which a capture does "
                           "not compute before its forward pass: use it in poll, vqa or describe")
    return SpecIntervention(spec, means)


def capture_intervened(options: CaptureOptions) -> CaptureSummary:
    """`run_capture` of `options`, with the model intervened as `options.intervention` says."""
    return run_capture(options, load_spec_intervention)
