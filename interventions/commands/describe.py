"""`describe`: generated descriptions, with the objects they name and the absent objects they name; against the
unintervened model, the share of named objects no longer named (Neo et al.'s generative decrease)."""

from __future__ import annotations

from dataclasses import dataclass

from analyses.command import Command
from analyses.output import Output
from interventions import evaluate, scores
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, for_model, load, write_results
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
        compared = conditions(options.spec, options.seed)
        loaded, dataset = load(options)
        compared = for_model(compared, loaded)
        rows = evaluate.describe(loaded, dataset, compared, options.instruction, options.max_new_tokens,
                                 ablation_means(list(compared.values()), loaded))
        table = scores.rate_scores(rows, RATES)
        lost = {row["condition"]: row for row in scores.lost_rate(rows, named)}
        for score in table:
            score |= {f"named_{k}": v for k, v in lost.get(score["condition"], {}).items() if k != "condition"}
        write_results(options, output, "describe", rows, table, compared)


def named(row: dict) -> set[str]:
    """The image's object labels a description names."""
    return {label for label in row["named"].split(";") if label}
