"""Scores against the papers' definitions, computed by hand in each test: POPE's metrics, Neo et al.'s Yes->No
flip rate and drop in the correct answer's probability, controls as the mean over draws, paired differences."""

from __future__ import annotations

import numpy as np
import pytest

from interventions import scores

ALL = "random;popular;adversarial"


def row(condition, image, label, present, said_yes, p_yes=0.5, group=None, draw=0, settings=ALL):
    return {"condition": condition, "group_of": group or condition, "draw": draw, "sample_id": image, "object": label,
            "present": present, "settings": settings if not present else ALL, "answer_yes": said_yes,
            "p_yes": p_yes, "p_no": 1 - p_yes}


def by_condition(table, condition, negatives="random"):
    (found,) = [s for s in table if s["condition"] == condition and s["negatives"] == negatives]
    return found


def test_flip_rate_and_probability_drop_on_two_questions():
    """Neo et al.: of the present objects the model says Yes to, the share it says No to under the intervention;
    and the mean drop in p(Yes) on them."""
    rows = [row("none", "A", "cat", True, True, 0.9), row("none", "B", "dog", True, True, 0.8),
            row("none", "B", "kite", False, False, 0.2),
            row("ablate", "A", "cat", True, False, 0.3), row("ablate", "B", "dog", True, True, 0.7),
            row("ablate", "B", "kite", False, True, 0.6)]
    score = by_condition(scores.polling_scores(rows, ("random",)), "ablate")
    assert score["yes_to_no"] == pytest.approx(100 * 1 / 2) and score["yes_to_no_n"] == 2
    assert score["no_to_yes"] == pytest.approx(100 * 1 / 1) and score["no_to_yes_n"] == 1
    assert score["p_correct_drop"] == pytest.approx(100 * ((0.9 - 0.3) + (0.8 - 0.7)) / 2)
    assert score["yes_to_no_low"] <= score["yes_to_no"] <= score["yes_to_no_high"]


CONFUSION = [  # per image: (label, present, said yes) -> tp 2, fp 1, fn 1, tn 2
    ("A", "cat", True, True), ("A", "dog", False, True),
    ("B", "cat", True, False), ("B", "dog", False, False),
    ("C", "kite", True, True), ("C", "dog", False, False),
]


def test_pope_metrics_of_pooled_counts():
    rows = [row("none", image, label, present, said) for image, label, present, said in CONFUSION]
    score = by_condition(scores.polling_scores(rows, ("random",)), "none")
    tp, fp, fn, tn = 2, 1, 1, 2
    assert score["accuracy"] == pytest.approx(100 * (tp + tn) / 6)
    assert score["precision"] == pytest.approx(100 * tp / (tp + fp))
    assert score["recall"] == pytest.approx(100 * tp / (tp + fn))
    assert score["f1"] == pytest.approx(100 * 2 * tp / (2 * tp + fp + fn))
    assert score["yes_ratio"] == pytest.approx(100 * (tp + fp) / 6)
    assert score["n_images"] == 3 and score["n_questions"] == 6
    assert score["f1_low"] <= score["f1"] <= score["f1_high"] and score["f1_low"] < score["f1_high"]
    same = [row("none", image, label, present, said) for image in "XYZ" for _, label, present, said in CONFUSION[:2]]
    flat = by_condition(scores.polling_scores(same, ("random",)), "none")  # identical images: no spread at all
    assert flat["f1_low"] == flat["f1"] == flat["f1_high"] == pytest.approx(100 * 2 / 3)


def test_a_control_is_the_mean_over_its_draws_and_compared_paired():
    rows = [row("none", image, label, present, said) for image, label, present, said in CONFUSION]
    rows += [row("ko", image, label, present, present) for image, label, present, _ in CONFUSION]  # all correct
    draws = [{("B", "cat"): True}, {("A", "dog"): False}]  # draw 0 fixes B's miss; draw 1 A's false alarm
    for d, fixed in enumerate(draws):
        rows += [row(f"ctl #{d}", image, label, present, fixed.get((image, label), said), group="ctl", draw=d)
                 for image, label, present, said in CONFUSION]
    table = scores.polling_scores(rows, ("random",))
    f1_draw0, f1_draw1 = 2 * 3 / (2 * 3 + 1 + 0), 2 * 2 / (2 * 2 + 0 + 1)  # tp, fp, fn: (3, 1, 0) and (2, 0, 1)
    control = by_condition(table, "ctl")
    assert control["draws"] == 2 and control["f1"] == pytest.approx(100 * (f1_draw0 + f1_draw1) / 2)
    low, high = np.percentile([f1_draw0, f1_draw1], [2.5, 97.5])
    assert control["f1_draws_low"] == pytest.approx(100 * low) and control["f1_draws_high"] == pytest.approx(100 * high)
    assert control["f1_change"] == pytest.approx(100 * ((f1_draw0 + f1_draw1) / 2 - 2 / 3))
    (comparison,) = scores.control_comparisons(rows, {"ctl": "ko"}, ("random",))
    assert comparison["f1_difference"] == pytest.approx(100 * (1 - (f1_draw0 + f1_draw1) / 2))
    # Yes->No on the present objects "none" says Yes to (A cat, C kite): neither flips, in ko or either draw
    assert comparison["yes_to_no_difference"] == 0


def test_popular_and_adversarial_scores_use_their_own_negatives():
    rows = [row("none", "A", "cat", True, True), row("none", "A", "dog", False, True, settings="random"),
            row("none", "A", "car", False, False, settings="popular;adversarial")]
    table = scores.polling_scores(rows, ("random", "popular", "adversarial"))
    assert by_condition(table, "none", "random")["precision"] == pytest.approx(50.0)  # tp 1, fp 1
    assert by_condition(table, "none", "popular")["precision"] == pytest.approx(100.0)  # tp 1, tn 1
    assert by_condition(table, "none", "adversarial")["accuracy"] == pytest.approx(100.0)


def test_rates_their_change_and_what_is_lost():
    def described(condition, image, named, objects=2):
        return {"condition": condition, "group_of": condition, "draw": 0, "sample_id": image, "objects": objects,
                "objects_named": len(named), "named": ";".join(named), "absent_named": 0}

    rows = [described("none", "1", ["a"]), described("none", "2", ["a", "b"]),
            described("ablate", "1", []), described("ablate", "2", ["b"])]
    table = {s["condition"]: s for s in scores.rate_scores(rows, {"named": ("objects_named", "objects")})}
    assert table["none"]["named"] == pytest.approx(100 * 3 / 4) and table["ablate"]["named"] == pytest.approx(25.0)
    assert table["ablate"]["named_change"] == pytest.approx(100 * (1 / 4 - 3 / 4))
    (lost,) = scores.lost_rate(rows, lambda r: set(filter(None, r["named"].split(";"))))
    # named without the intervention: (1, a), (2, a), (2, b); lost: (1, a) and (2, a)
    assert lost["lost"] == pytest.approx(100 * 2 / 3) and lost["lost_n"] == 3
