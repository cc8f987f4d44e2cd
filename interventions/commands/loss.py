"""`loss`: caption loss as a function of how many image tokens the model keeps (Wei ch. 4.3), with and without
intervention specs (e.g. Wei's masking intervals: a knockout of every query from `image[a:b]`)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from analyses import intervals
from analyses.command import Command
from analyses.output import Output, markdown_table
from interventions import evaluate, figures
from interventions.commands.options import ConditionOptions
from interventions.commands.results import conditions, for_model, load
from interventions.evaluate import CONDITION
from interventions.means import ablation_means
from interventions.spec import NONE
from store.arguments import option
from store.schema import SAMPLE_ID


@dataclass(frozen=True, kw_only=True)
class LossOptions(ConditionOptions):
    keep: str = option("0,1,2,4,8,16,32,64,all", help="comma-separated image-token counts")
    instruction: str = option(evaluate.DESCRIBE, help="the request the caption answers")


class Loss(Command):
    name = "loss"
    help = "caption loss as a function of how many image tokens are kept (Wei ch. 4.3), per intervention spec"
    Options = LossOptions

    def run(self, options: LossOptions, output: Output) -> None:
        keeps = [None if v.strip() == evaluate.KEEP_ALL else int(v) for v in options.keep.split(",")]
        compared = conditions(options.spec, options.seed)
        for spec in compared.values():
            evaluate.with_keep(spec, None)  # a spec that truncates by itself fails before the model loads
        loaded, dataset = load(options)
        compared = for_model(compared, loaded)
        rows = evaluate.caption_losses(loaded, dataset, keeps, options.instruction,
                                       ablation_means(list(compared.values()), loaded), compared)
        table = loss_table(rows)
        output.csv("caption_loss_by_sample.csv", rows)
        output.csv("caption_loss.csv", table)
        output.json("caption_loss.json", {"model": options.model, "dataset": options.dataset,
                                          "instruction": options.instruction, "seed": options.seed,
                                          "scores": table.astype(object).where(table.notna(), None).to_dict("records"),
                                          "conditions": {key: spec.as_dict() for key, spec in compared.items()}})
        output.figure("caption_loss_vs_kept_tokens.png", figures.loss_curve(table))
        print(markdown_table(table.round(4)))


def loss_table(rows: list[dict]) -> pd.DataFrame:
    """Per condition and `keep` value, in the rows' order: the mean number of image tokens kept, the mean loss with
    its 95% bootstrap interval over images (one caption each), its std and n; for every condition but "none", the
    mean change in loss against "none" at the same `keep` with its paired interval over images (`loss_change`)."""
    frame = pd.DataFrame(rows)
    if CONDITION not in frame:
        frame[CONDITION] = NONE
    frame["keep"] = frame["keep"].astype(str)
    table = []
    for (condition, keep), mine in frame.groupby([CONDITION, "keep"], sort=False):
        loss = intervals.bootstrap_mean(mine["loss"].to_numpy())
        row = {CONDITION: condition, "keep": keep, "kept_image_tokens": mine["kept_image_tokens"].mean(),
               "loss": loss.estimate, "loss_low": loss.low, "loss_high": loss.high, "std": mine["loss"].std(),
               "n": loss.n}
        if condition != NONE and NONE in set(frame[CONDITION]):
            row |= _change(mine, frame[(frame[CONDITION] == NONE) & (frame["keep"] == keep)])
        table.append(row)
    return pd.DataFrame(table)


def _change(mine: pd.DataFrame, none: pd.DataFrame) -> dict[str, float]:
    """Paired change in loss (this condition minus "none") over the images both were measured on."""
    paired = mine.merge(none, on=SAMPLE_ID, suffixes=("", "_none"))
    change = intervals.paired_difference(paired["loss"].to_numpy(), paired["loss_none"].to_numpy())
    return {"loss_change": change.estimate, "loss_change_low": change.low, "loss_change_high": change.high,
            "loss_change_n": change.n}
