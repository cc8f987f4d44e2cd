"""`vqa`: questions answered after a prefilled answer prefix; accuracy among the data set's answers, and against
the unintervened model the answers lost and the drop in the correct answer's probability (Neo et al.)."""

from __future__ import annotations

from dataclasses import dataclass

from analyses.command import Command
from analyses.output import Output
from interventions import evaluate, scores
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, for_model, load, write_results
from interventions.means import ablation_means
from store.arguments import option

RATES = {"accuracy": ("correct", None), "p_correct": ("p_correct", None)}


@dataclass(frozen=True, kw_only=True)
class VqaOptions(ConditionOptions):
    answer_prefix: str = option("", help="text the answer starts with, e.g. 'It is a' (Neo et al.)")


class Vqa(Command):
    name = "vqa"
    help = "questions with a prefilled answer prefix: accuracy among the dataset's answers"
    Options = VqaOptions

    def run(self, options: VqaOptions, output: Output) -> None:
        compared = conditions(options.spec, options.seed)
        loaded, dataset = load(options)
        compared = for_model(compared, loaded)
        rows = evaluate.vqa(loaded, dataset, compared, options.answer_prefix,
                            ablation_means(list(compared.values()), loaded))
        table = scores.rate_scores(rows, RATES)
        lost = {row["condition"]: row for row in scores.lost_rate(rows, lambda row: {"correct"} if row["correct"] else set())}
        for score in table:
            score |= {f"correct_{k}": v for k, v in lost.get(score["condition"], {}).items() if k != "condition"}
        write_results(options, output, "vqa", rows, table, compared)
