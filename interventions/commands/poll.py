"""`poll`: yes/no object polling (POPE's random, popular and adversarial negatives) with and without
interventions, Liu et al.'s controls, Neo et al.'s layer windows, image selection and hallucination control."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

from analyses.command import Command
from analyses.output import Output
from capture.datasets import Dataset
from capture.loading import LoadedModel
from capture.prompts import POLL_QUESTION
from interventions import figures, polling, selection, variants
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, for_model, load, write_results
from interventions.means import ablation_means
from interventions.scores import control_comparisons, polling_scores
from interventions.spec import NONE, InterventionSpec
from store.arguments import option

OBJECT_SLOT = "{object}"  # where --question names the object
ONLY_PRESENT = "present only"  # the "negatives" of --neo-selection, which asks about present objects only


@dataclass(frozen=True, kw_only=True)
class PollOptions(ConditionOptions):
    negatives: str = option(",".join(polling.NEGATIVES),
                            help="POPE settings of the absent objects asked about: random, popular, adversarial")
    controls: bool = option(False, help="add Liu et al.'s controls: as many input-dependent / random (layer, kv_head) "
                                        "units, drawn from the knockout's layer group")
    control_draws: int = option(10, help="seeded draws of each control and of each spec with random token sets "
                                         "(reported as the mean over draws, with intervals)")
    layer_windows: str | None = option(None, metavar="neo|sliding[:N]",
                                       help="also run each spec's knockout restricted to Neo et al.'s five windows "
                                            "scaled to the model, or to every window of N consecutive layers (10)")
    question: str = option(POLL_QUESTION, help="must contain {object}")
    neo_selection: bool = option(False, help="ask only about Neo et al.'s objects (one instance, --object-area, at "
                                             "most --max-objects objects in the image), no absent ones")
    object_area: str = option("1000,2000", help="MIN,MAX area in px² of --neo-selection's objects")
    max_objects: int = option(3, help="most annotated objects an image may hold for --neo-selection")
    hallucination_control: bool = option(False, help="keep only the objects the model says Yes to, and No once "
                                                     "their pixels are replaced by noise (Neo et al.)")


class Poll(Command):
    name = "poll"
    help = "yes/no object polling (POPE) with and without interventions, controls and layer windows"
    Options = PollOptions

    def run(self, options: PollOptions, output: Output) -> None:
        if OBJECT_SLOT not in options.question:
            raise ValueError(f"--question must contain {OBJECT_SLOT}")
        if options.control_draws < 1:
            raise ValueError("--control-draws must be at least 1")
        settings = tuple(s.strip() for s in options.negatives.split(",") if s.strip())
        unknown = set(settings) - set(polling.NEGATIVES)
        if unknown or not settings:
            raise ValueError(f"--negatives: choose from {', '.join(polling.NEGATIVES)}")
        compared = conditions(options.spec, options.seed)
        loaded, dataset = load(options)
        compared = for_model(compared, loaded)
        questions, chosen = _questions(options, loaded, dataset, settings)
        settings = (ONLY_PRESENT,) if options.neo_selection else settings
        compared, controls = with_variants(compared, options, loaded)
        rows = polling.poll(loaded, dataset, compared, ablation_means(list(compared.values()), loaded),
                            options.question, questions)
        scores = polling_scores(rows, settings)
        comparisons = control_comparisons(rows, controls, settings)
        write_results(options, output, "polling", rows, scores, compared,
                      {"comparisons": comparisons, "selection": chosen})
        if comparisons:
            output.csv("polling_comparisons.csv", comparisons)
        output.figure("polling_f1.png", figures.polling_bars(scores))
        if options.layer_windows:
            output.figure("polling_by_layer_window.png", figures.window_effect(scores))


def _questions(options: PollOptions, loaded: LoadedModel, dataset: Dataset, settings: tuple[str, ...]
               ) -> tuple[list[polling.Question], dict[str, Any] | None]:
    """The questions asked, and what Neo et al.'s selection kept (None without it)."""
    if not options.neo_selection:
        if options.hallucination_control:
            raise ValueError("--hallucination-control needs --neo-selection (it filters the selected objects)")
        return polling.polling_questions(dataset, settings, options.seed), None
    low, high = (float(v) for v in options.object_area.split(","))
    criteria = selection.Selection(low, high, options.max_objects)
    targets = selection.targets(dataset, criteria)
    checked = None
    if options.hallucination_control:
        checked = selection.hallucination_control(loaded, dataset, targets, options.question, criteria.region,
                                                  options.seed)
        targets = [(row["index"], row["object"]) for row in checked if row["kept"]]
    if not targets:
        raise ValueError(f"no object of dataset {dataset.name} passes Neo et al.'s selection ({criteria.as_dict()}"
                         f"{', hallucination control' if checked is not None else ''})")
    return polling.polling_questions(dataset, targets=targets), {"criteria": criteria.as_dict(), "targets": len(targets),
                                                                  "hallucination_control": checked}


def with_variants(compared: dict[str, InterventionSpec], options: PollOptions, loaded: LoadedModel
                  ) -> tuple[dict[str, InterventionSpec], dict[str, str]]:
    """`compared` with each randomised spec drawn --control-draws times, and each spec's controls (--controls) and
    layer windows (--layer-windows) after it; and every reported control with the condition it controls."""
    config = loaded.adapter.text_config(loaded.config)
    chosen_windows = variants.windows(options.layer_windows, config.num_hidden_layers) if options.layer_windows else []
    expanded: dict[str, InterventionSpec] = {}
    controls: dict[str, str] = {}
    for name, spec in compared.items():
        expanded |= variants.redraws(spec, options.control_draws) if spec.randomised else {name: spec}
        if spec.control_of:
            controls[name] = spec.control_of
        if name == NONE:
            continue
        if options.controls and spec.knockout and not _whole_layers(spec):
            drawn = _controls(spec, config.num_key_value_heads, options)
            expanded |= drawn
            controls |= {s.group_of: name for s in drawn.values()}
        expanded |= variants.layer_window_conditions(spec, chosen_windows)
    return expanded, controls


def _whole_layers(spec: InterventionSpec) -> bool:
    """Does a knockout block whole layers (no per-head units to draw controls for)? Said on stderr."""
    whole = any(head is None for knockout in spec.knockout for _, head in knockout.units)
    if whole:
        print(f"note: no controls for {spec.name!r}: it blocks whole layers, not (layer, kv_head) units", file=sys.stderr)
    return whole


def _controls(spec: InterventionSpec, n_kv_heads: int, options: PollOptions) -> dict[str, InterventionSpec]:
    """Every control of `spec` that its layer group can supply; one that cannot is left out, said on stderr."""
    drawn = {}
    for kind in variants.CONTROL_KINDS:
        try:
            drawn |= variants.control_conditions(spec, n_kv_heads, options.control_draws, options.seed, (kind,))
        except ValueError as error:
            print(f"note: no {kind} control for {spec.name!r}: {error}", file=sys.stderr)
    return drawn
