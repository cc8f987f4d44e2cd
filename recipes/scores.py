"""Scores recipes compute from the answer tables of the intervention commands, with 95% bootstrap intervals."""

from __future__ import annotations

import numpy as np
import pandas as pd

from analyses import intervals
from store.schema import SAMPLE_ID

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


def mme_scores(answers: pd.DataFrame, subtask_of: dict[str, str], image_of: dict[str, str]) -> dict[str, float]:
    """MME's score of each subtask (the eval tool's: accuracy over questions plus accuracy+ over images, whose two
    questions must both be right, in percent; at most 200) from `answers` (columns sample_id, `correct`) of one
    condition, with each question's subtask and image; and "MME*", their mean (Liu et al. Table 3)."""
    frame = answers.assign(subtask=answers[SAMPLE_ID].map(subtask_of), mme_image=answers[SAMPLE_ID].map(image_of))
    frame["correct"] = frame["correct"].astype(str).str.lower() == "true"
    scores = {}
    for subtask, questions in frame.groupby("subtask", sort=True):
        accuracy = questions["correct"].mean()
        accuracy_plus = questions.groupby("mme_image")["correct"].all().mean()
        scores[subtask] = 100.0 * (accuracy + accuracy_plus)
    scores["MME*"] = float(np.mean(list(scores.values()))) if scores else float("nan")
    return scores
