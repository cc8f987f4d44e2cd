"""What capture needs from an intervention (`--intervention SPEC`): resolve it for each sample, apply it around
that sample's forward pass, and say what to record. `interventions.capturing` implements it for spec files; capture
itself never imports the interventions package (the `python -m capture` entry point hands it in)."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

from store.token_table import TokenTable

if TYPE_CHECKING:
    from capture.loading import LoadedModel
    from capture.options import CaptureOptions


class Intervention(Protocol):
    """An intervention resolved once per capture (before any weight is loaded)."""

    def record(self) -> dict[str, Any]:
        """What the capture config records of it."""

    def plan(self, table: TokenTable, annotation: dict[str, Any], image_sizes: list[tuple[int, int]],
             sample_id: str) -> tuple[Any, TokenTable]:
        """Its plan for one sample (`sample_id` seeds its random choices), and the token table of the sequence the
        model will then see."""

    def applied(self, model: LoadedModel, plan: Any) -> AbstractContextManager[None]:
        """A context in which `model`'s forward passes run with `plan` applied."""


# Builds the intervention of `options.intervention` for a model whose weights are not loaded yet; raises
# CaptureError (one line) for a spec that cannot be used with these options.
InterventionLoader = Callable[["LoadedModel", "CaptureOptions"], Intervention]
