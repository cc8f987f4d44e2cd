"""`vqa`: questions answered after a prefilled answer prefix; accuracy among the data set's answers."""

from __future__ import annotations

from dataclasses import dataclass

from analyses.command import Command
from analyses.output import Output
from interventions import evaluate
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, load, write_results
from interventions.means import ablation_means
from store.arguments import option


@dataclass(frozen=True, kw_only=True)
class VqaOptions(ConditionOptions):
    answer_prefix: str = option("", help="text the answer starts with, e.g. 'The colour is'")


class Vqa(Command):
    name = "vqa"
    help = "questions with a prefilled answer prefix: accuracy among the dataset's answers"
    Options = VqaOptions

    def run(self, options: VqaOptions, output: Output) -> None:
        compared = conditions(options.spec)
        loaded, dataset = load(options)
        rows = evaluate.vqa(loaded, dataset, compared, options.answer_prefix,
                            ablation_means(list(compared.values()), loaded))
        scores = evaluate.rate_scores(rows, {"accuracy": ("correct", None)})
        write_results(options, output, "vqa", rows, scores, compared)
