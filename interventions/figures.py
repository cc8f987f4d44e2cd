"""Figures of intervention results."""

from __future__ import annotations

import re

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.figure import Figure


def polling_bars(scores: list[dict]) -> Figure:
    """F1 and yes-ratio per condition."""
    table = pd.DataFrame(scores)
    figure, axis = plt.subplots(figsize=(max(5.0, 1.1 * len(table) + 2), 4))
    positions = range(len(table))
    axis.bar([p - 0.2 for p in positions], table["f1"], width=0.4, label="F1")
    axis.bar([p + 0.2 for p in positions], table["yes_ratio"], width=0.4, label="yes ratio", alpha=0.6)
    axis.set_xticks(list(positions), table["condition"], rotation=30, ha="right", fontsize=8)
    axis.set_ylabel("%")
    axis.set_ylim(0, 100)
    axis.set_title("Object polling with and without interventions")
    axis.legend()
    figure.tight_layout()
    return figure


def window_effect(scores: list[dict]) -> Figure:
    """Change in F1 against the unintervened model, per knocked-out layer window."""
    rows = [(s["condition"], s["f1_change"]) for s in scores if re.search(r" layers \d+-\d+$", s["condition"])]
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for spec in dict.fromkeys(re.sub(r" layers \d+-\d+$", "", name) for name, _ in rows):
        mine = [(name.rsplit(" layers ", 1)[1], change) for name, change in rows if name.startswith(spec + " layers ")]
        axis.plot([w for w, _ in mine], [c for _, c in mine], marker="o", label=spec)
    axis.axhline(0, color="grey", linewidth=0.8)
    axis.set_xlabel("knocked-out layers")
    axis.set_ylabel("F1 change (points)")
    axis.set_title("Effect of the knockout by layer window")
    axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def loss_curve(table: pd.DataFrame) -> Figure:
    """Mean caption loss (with its std) against the number of image tokens kept."""
    figure, axis = plt.subplots(figsize=(6.5, 4))
    axis.errorbar(table["kept_image_tokens"], table["mean"], yerr=table["std"].fillna(0), marker="o", capsize=3)
    axis.set_xlabel("image tokens kept (first n)")
    axis.set_ylabel("caption loss (nats / token)")
    axis.set_title("Caption loss vs kept image tokens")
    figure.tight_layout()
    return figure
