"""`describe`: generated descriptions, with the objects they name and the absent objects they name."""

from __future__ import annotations

from dataclasses import dataclass

from analyses.command import Command
from analyses.output import Output
from interventions import evaluate
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, load, write_results
from interventions.means import ablation_means
from store.arguments import option

# score -> (numerator column, denominator column or None for the number of descriptions)
RATES = {"objects_named": ("objects_named", "objects"), "absent_named_per_description": ("absent_named", None)}


@dataclass(frozen=True, kw_only=True)
class DescribeOptions(ConditionOptions):
    instruction: str = option(evaluate.DESCRIBE, help="the request for a description")
    max_new_tokens: int = option(24, help="longest description, in tokens")


class Describe(Command):
    name = "describe"
    help = "generated descriptions: objects named and absent objects named"
    Options = DescribeOptions

    def run(self, options: DescribeOptions, output: Output) -> None:
        compared = conditions(options.spec)
        loaded, dataset = load(options)
        rows = evaluate.describe(loaded, dataset, compared, options.instruction, options.max_new_tokens,
                                 ablation_means(list(compared.values()), loaded))
        write_results(options, output, "describe", rows, evaluate.rate_scores(rows, RATES), compared)
