"""Scores recipes compute from the answer tables of the intervention commands, with 95% bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses import intervals

YES = "yes"


def f1(truth: np.ndarray, chosen: np.ndarray) -> float:
    """F1 with "yes" as the positive class (POPE's), from 0/1 arrays of the true and the chosen answers."""
    true_positive = float((truth * chosen).sum())
    wrong = float((truth != chosen).sum())
    return 2 * true_positive / (2 * true_positive + wrong) if true_positive + wrong else float("nan")


def pope_f1(answers: pd.DataFrame) -> intervals.Interval:
    """POPE's F1 in percent over the questions of `answers` (columns `answer` and `chosen`, yes / no), with a
    bootstrap interval over questions."""
    truth = (answers["answer"].astype(str).str.lower() == YES).to_numpy(np.float64)
    chosen = (answers["chosen"].astype(str).str.lower() == YES).to_numpy(np.float64)
    interval = intervals.bootstrap(f1, (truth, chosen), method="bootstrap over questions")
    scale = 100.0
    return intervals.Interval(scale * interval.estimate, scale * interval.low, scale * interval.high, interval.n,
                              interval.method)
