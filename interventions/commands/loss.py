"""`loss`: caption loss as a function of how many image tokens the model keeps (Wei ch. 4.3)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analyses import intervals
from analyses.command import Command
from analyses.output import Output, markdown_table
from interventions import evaluate, figures
from interventions.commands.options import ModelOptions
from interventions.commands.results import load
from store.arguments import option


@dataclass(frozen=True, kw_only=True)
class LossOptions(ModelOptions):
    keep: str = option("0,1,2,4,8,16,32,64,all", help="comma-separated image-token counts")
    instruction: str = option(evaluate.DESCRIBE, help="the request the caption answers")


class Loss(Command):
    name = "loss"
    help = "caption loss as a function of how many image tokens are kept (Wei ch. 4.3)"
    Options = LossOptions

    def run(self, options: LossOptions, output: Output) -> None:
        keeps = [None if v.strip() == evaluate.KEEP_ALL else int(v) for v in options.keep.split(",")]
        loaded, dataset = load(options)
        rows = evaluate.caption_losses(loaded, dataset, keeps, options.instruction)
        table = loss_table(rows)
        output.csv("caption_loss_by_sample.csv", rows)
        output.csv("caption_loss.csv", table)
        output.figure("caption_loss_vs_kept_tokens.png", figures.loss_curve(table))
        print(markdown_table(table.round(4)))


def loss_table(rows: list[dict]) -> pd.DataFrame:
    """Per `keep` value, in --keep order: the mean number of image tokens kept, the mean loss with its 95%
    bootstrap interval over images (one caption each), its std and n."""
    table = []
    for keep, mine in pd.DataFrame(rows).groupby("keep", sort=False):
        loss = intervals.bootstrap_mean(mine["loss"].to_numpy())
        table.append({"keep": keep, "kept_image_tokens": mine["kept_image_tokens"].mean(), "loss": loss.estimate,
                      "loss_low": loss.low, "loss_high": loss.high, "std": mine["loss"].std(), "n": loss.n})
    return pd.DataFrame(table)
