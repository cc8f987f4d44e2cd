"""`poll`: yes/no object polling (POPE-style F1) with and without interventions, their controls and layer windows."""

from __future__ import annotations

from dataclasses import dataclass

from analyses.command import Command
from analyses.output import Output
from capture.prompts import POLL_QUESTION
from interventions import evaluate, figures
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, load, write_results
from interventions.means import ablation_means
from interventions.spec import NONE, InterventionSpec
from store.arguments import option

OBJECT_SLOT = "{object}"  # where --question names the object


@dataclass(frozen=True, kw_only=True)
class PollOptions(ConditionOptions):
    controls: bool = option(False, help="add Liu et al.'s controls: as many other / random (layer, kv_head) units in "
                                        "the same layers")
    layer_windows: int | None = option(None, metavar="N", help="also run each spec's knockout restricted to every "
                                                                "window of N consecutive layers")
    question: str = option(POLL_QUESTION, help="must contain {object}")
    seed: int = option(0, help="absent objects and control units")


class Poll(Command):
    name = "poll"
    help = "yes/no object polling (POPE-style F1) with and without interventions"
    Options = PollOptions

    def run(self, options: PollOptions, output: Output) -> None:
        if OBJECT_SLOT not in options.question:
            raise ValueError(f"--question must contain {OBJECT_SLOT}")
        compared = conditions(options.spec)
        loaded, dataset = load(options)
        n_kv_heads = loaded.adapter.text_config(loaded.config).num_key_value_heads
        compared = _with_variants(compared, options, n_kv_heads)
        means = ablation_means(list(compared.values()), loaded)
        rows = evaluate.poll(loaded, dataset, compared, means, options.question, options.seed)
        scores = evaluate.polling_scores(rows)
        base = next(s for s in scores if s["condition"] == NONE)
        for score in scores:
            score["f1_change"] = score["f1"] - base["f1"]
        write_results(options, output, "polling", rows, scores, compared)
        output.figure("polling_f1.png", figures.polling_bars(scores))
        if options.layer_windows:
            output.figure("polling_f1_by_layer_window.png", figures.window_effect(scores))


def _with_variants(compared: dict[str, InterventionSpec], options: PollOptions,
                   n_kv_heads: int) -> dict[str, InterventionSpec]:
    """`compared` with each spec's controls (--controls) and layer windows (--layer-windows) added after it all."""
    variants = dict(compared)
    for spec in list(compared.values())[1:]:  # the first is "none"
        if options.controls:
            variants.update(evaluate.control_conditions(spec, n_kv_heads, options.seed))
        if options.layer_windows:
            variants.update(evaluate.layer_window_conditions(spec, options.layer_windows))
    return variants
