"""The scores recipes compute themselves, against values worked out by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recipes.recipe import Context
from recipes.scores import mme_scores, pope_f1


def test_pope_f1_counts_yes_as_positive():
    # TP: q1; FN: q2; FP: q3; TN: q4 -> precision 1/2, recall 1/2, F1 1/2
    answers = pd.DataFrame({"answer": ["yes", "yes", "no", "no"] * 10, "chosen": ["yes", "no", "Yes", "no"] * 10})
    f1 = pope_f1(answers)
    assert f1.estimate == pytest.approx(50.0) and f1.n == 40
    assert 25.0 < f1.low < 50.0 < f1.high < 75.0
    all_no = pope_f1(pd.DataFrame({"answer": ["yes", "no"], "chosen": ["no", "no"]}))
    assert all_no.estimate == 0.0  # no true positive: F1 0 (2 TP / (2 TP + FP + FN) = 0 / 1)
    assert math.isnan(pope_f1(pd.DataFrame({"answer": ["no"], "chosen": ["no"]})).estimate)  # no yes anywhere


def test_limit_takes_the_quick_settings(tmp_path):
    paper = Context("m", {}, tmp_path)
    quick = Context("m", {}, tmp_path, limit=3)
    assert (paper.count(1000), paper.count(None), paper.sweep(50, 5)) == (1000, None, 50)
    assert (quick.count(1000), quick.count(None), quick.count(2), quick.sweep(50, 5)) == (3, 3, 2, 5)


def test_mme_score_is_accuracy_plus_accuracy_plus():
    # count: image a both right, image b one of two -> accuracy 3/4, accuracy+ 1/2 -> 125; color: all right -> 200
    answers = pd.DataFrame({"sample_id": ["a1", "a2", "b1", "b2", "c1", "c2"],
                            "correct": [True, True, True, False, True, True]})
    subtask = {"a1": "count", "a2": "count", "b1": "count", "b2": "count", "c1": "color", "c2": "color"}
    image = {key: key[0] for key in subtask}
    assert mme_scores(answers, subtask, image) == {"color": 200.0, "count": 125.0, "MME*": 162.5}
