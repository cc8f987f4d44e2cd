"""Figures of intervention results: every estimate drawn with its 95% interval."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

WINDOW = re.compile(r" layers (\d+)-(\d+)$")


def _error(table: pd.DataFrame, name: str) -> np.ndarray:
    """(2, n) distances from each estimate to its interval's ends, for `errorbar` / `bar` (0 where unknown)."""
    estimate = table[name].astype(float)
    low = (estimate - table[f"{name}_low"].astype(float)).fillna(0).clip(lower=0)
    high = (table[f"{name}_high"].astype(float) - estimate).fillna(0).clip(lower=0)
    return np.vstack([low.to_numpy(), high.to_numpy()])


def polling_bars(scores: list[dict]) -> Figure:
    """F1 per condition, one bar per POPE setting, with 95% intervals over images (controls: mean over draws)."""
    table = pd.DataFrame(scores)
    conditions = list(dict.fromkeys(table["condition"]))
    settings = list(dict.fromkeys(table["negatives"]))
    figure, axis = plt.subplots(figsize=(max(5.0, 1.2 * len(conditions) + 2), 4.2))
    width = 0.8 / len(settings)
    for i, setting in enumerate(settings):
        mine = table[table["negatives"] == setting].set_index("condition").reindex(conditions)
        positions = np.arange(len(conditions)) + (i - (len(settings) - 1) / 2) * width
        axis.bar(positions, mine["f1"], width=width, yerr=_error(mine, "f1"), capsize=3, label=f"{setting} negatives")
    axis.set_xticks(range(len(conditions)), conditions, rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("F1 (%), 95% interval over images")
    axis.set_ylim(0, 100)
    axis.set_title(f"Object polling (n = {int(table['n_images'].max())} images)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def window_effect(scores: list[dict]) -> Figure:
    """Per knocked-out layer window: the F1 change against the unintervened model and Neo et al.'s drop in the
    probability of the correct answer, with paired 95% intervals over images."""
    table = pd.DataFrame(scores)
    windowed = table["condition"].map(lambda name: WINDOW.search(name) is not None)
    table = table[windowed & (table["negatives"] == table["negatives"].iloc[0])]
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for spec in dict.fromkeys(WINDOW.sub("", name) for name in table["condition"]):
        mine = table[table["condition"].map(lambda name, spec=spec: WINDOW.sub("", name) == spec)]
        labels = [WINDOW.search(name).group(0).removeprefix(" layers ") for name in mine["condition"]]
        for axis, name in zip(axes, ("f1_change", "p_correct_drop"), strict=True):
            axis.errorbar(range(len(labels)), mine[name].astype(float), yerr=_error(mine, name), marker="o",
                          capsize=3, label=spec)
            axis.set_xticks(range(len(labels)), labels)
    for axis, label in zip(axes, ("F1 change (points)", "drop in p(correct answer) (points)"), strict=True):
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set(xlabel="knocked-out layers", ylabel=label)
        axis.legend(fontsize=8)
    figure.suptitle("Effect of the knockout by layer window (95% intervals, paired over images)")
    figure.tight_layout()
    return figure


def loss_curve(table: pd.DataFrame) -> Figure:
    """Mean caption loss with its 95% interval over images against the number of image tokens kept, one curve per
    condition (the unintervened model first); beside it, when there are specs, each one's change in loss against
    the unintervened model with its paired 95% interval."""
    changes = "loss_change" in table and table["loss_change"].notna().any()
    figure, axes = plt.subplots(1, 2 if changes else 1, figsize=(12 if changes else 6.5, 4), squeeze=False)
    conditions = table["condition"] if "condition" in table else pd.Series("none", index=table.index)
    for condition in dict.fromkeys(conditions):
        mine = table[conditions == condition]
        drawn = axes[0, 0].errorbar(mine["kept_image_tokens"], mine["loss"], yerr=_error(mine, "loss"), marker="o",
                                    capsize=3, label=condition)
        if changes and mine["loss_change"].notna().any():
            axes[0, 1].errorbar(mine["kept_image_tokens"], mine["loss_change"], yerr=_error(mine, "loss_change"),
                                marker="o", capsize=3, label=condition, color=drawn.lines[0].get_color())
    axes[0, 0].set(xlabel="image tokens kept (first n)", ylabel="caption loss (nats / token)",
                   title=f"Caption loss vs kept image tokens (n = {int(table['n'].max())} images, 95% interval)")
    axes[0, 0].legend(fontsize=8)
    if changes:
        axes[0, 1].axhline(0, color="grey", linewidth=0.8)
        axes[0, 1].set(xlabel="image tokens kept (first n)", ylabel="change in loss vs none (nats / token)",
                       title="Effect of each spec (paired 95% interval over images)")
        axes[0, 1].legend(fontsize=8)
    figure.tight_layout()
    return figure
