"""Scores of evaluation answers, each with n and a 95% interval (`analyses.intervals`).

Units are images: every interval is a (cluster) bootstrap over images, the questions of an image resampled together.
A condition drawn several times (a control: `group_of`) is reported as the mean over its draws, with the interval
of that mean over images and the central 95% of the draws. Differences between two conditions asked the same
questions (a condition and "none", a knockout and its control) are paired: both are resampled with the same images.

Polling (in %): accuracy, precision, recall, F1 (positive class: yes) and yes ratio, as POPE; per condition and
"none", Neo et al.'s Yes->No flip rate (present objects the unintervened model says Yes to, answered No), the
No->Yes rate (absent objects said No to, answered Yes) and the drop in the probability of the correct answer
("Yes", present objects; softmax over the vocabulary).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from analyses import intervals
from analyses.intervals import Interval
from interventions.evaluate import CONDITION, GROUP_OF
from interventions.polling import SETTINGS
from interventions.spec import NONE
from store.schema import SAMPLE_ID

PERCENT = 100.0
POLL_METRICS = ("accuracy", "precision", "recall", "f1", "yes_ratio")


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, 0 where the denominator is 0 (POPE's convention for an empty class)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.zeros(np.broadcast(numerator, denominator).shape),
                     where=denominator > 0)


# metric of pooled confusion counts (true positives, false positives, false negatives, true negatives)
METRICS: dict[str, Callable[..., np.ndarray]] = {
    "accuracy": lambda tp, fp, fn, tn: _ratio(tp + tn, tp + fp + fn + tn),
    "precision": lambda tp, fp, fn, tn: _ratio(tp, tp + fp),
    "recall": lambda tp, fp, fn, tn: _ratio(tp, tp + fn),
    "f1": lambda tp, fp, fn, tn: _ratio(2 * tp, 2 * tp + fp + fn),
    "yes_ratio": lambda tp, fp, fn, tn: _ratio(tp + fp, tp + fp + fn + tn),
}


def flat(name: str, interval: Interval, scale: float = PERCENT) -> dict[str, Any]:
    """An interval as table columns NAME, NAME_low, NAME_high (scaled)."""
    values = [interval.estimate, interval.low, interval.high]
    return dict(zip((name, f"{name}_low", f"{name}_high"), [None if np.isnan(v) else scale * v for v in values],
                    strict=True))


def image_counts(frame: pd.DataFrame, conditions: list[str], images: list[str]) -> np.ndarray:
    """(images, conditions, 4) confusion counts tp, fp, fn, tn of each condition's answers on each image."""
    counts = np.zeros((len(images), len(conditions), 4))
    for j, condition in enumerate(conditions):
        mine = frame[frame[CONDITION] == condition]
        truth, said = mine["present"].to_numpy(bool), mine["answer_yes"].to_numpy(bool)
        cells = pd.DataFrame({SAMPLE_ID: mine[SAMPLE_ID].to_numpy(), "tp": truth & said, "fp": ~truth & said,
                              "fn": truth & ~said, "tn": ~truth & ~said})
        counts[:, j] = cells.groupby(SAMPLE_ID)[["tp", "fp", "fn", "tn"]].sum().reindex(images, fill_value=0).to_numpy()
    return counts


def metric_interval(metric: str, counts: np.ndarray, minus: np.ndarray | None = None, seed: int = 0) -> Interval:
    """The metric of pooled counts (images, draws, 4), averaged over draws, minus the same of `minus` (paired: the
    same images); bootstrap over images."""
    blocks = [counts] if minus is None else [counts, minus]
    columns = tuple(block[:, d, j] for block in blocks for d in range(block.shape[1]) for j in range(4))
    sizes = [block.shape[1] for block in blocks]
    function = METRICS[metric]

    def statistic(*data: np.ndarray, axis: int = -1) -> np.ndarray:
        sums = np.stack([column.sum(axis=axis) for column in data])
        values, start = [], 0
        for size in sizes:
            block = sums[start : start + 4 * size].reshape((size, 4, *sums.shape[1:]))
            values.append(function(*block.transpose(1, 0, *range(2, block.ndim))).mean(axis=0))
            start += 4 * size
        return values[0] - values[1] if minus is not None else values[0]

    method = "paired bootstrap over images" if minus is not None else "bootstrap over images"
    return intervals.bootstrap(statistic, columns, seed=seed, method=method, vectorized=True)


def _groups(frame: pd.DataFrame) -> dict[str, list[str]]:
    """Reported condition -> its conditions (draws), in first-seen order."""
    groups: dict[str, list[str]] = {}
    for group, condition in zip(frame[GROUP_OF], frame[CONDITION], strict=True):
        if condition not in groups.setdefault(group, []):
            groups[group].append(condition)
    return groups


def _per_question(frame: pd.DataFrame, conditions: list[str], column: str) -> pd.Series:
    """Mean over `conditions` (draws) of `column`, per question (sample id, object)."""
    mine = frame[frame[CONDITION].isin(conditions)]
    return mine.groupby([SAMPLE_ID, "object"])[column].mean()


def transitions(frame: pd.DataFrame, conditions: list[str], baseline: str = NONE) -> dict[str, Any]:
    """Yes->No and No->Yes rates against `baseline` and the drop in p(correct) on present objects, each averaged
    over the draws, with cluster-bootstrap intervals over images and their n (questions, images)."""
    base = frame[frame[CONDITION] == baseline].set_index([SAMPLE_ID, "object"])
    said_yes = _per_question(frame, conditions, "answer_yes").astype(float).reindex(base.index)
    p_yes = _per_question(frame, conditions, "p_yes").reindex(base.index)
    images = base.index.get_level_values(SAMPLE_ID).to_numpy()
    present, base_yes = base["present"].to_numpy(bool), base["answer_yes"].to_numpy(bool)
    out: dict[str, Any] = {}
    for name, chosen, values in (("yes_to_no", present & base_yes, 1 - said_yes.to_numpy()),
                                 ("no_to_yes", ~present & ~base_yes, said_yes.to_numpy()),
                                 ("p_correct_drop", present, base["p_yes"].to_numpy() - p_yes.to_numpy())):
        interval = intervals.bootstrap_mean(values[chosen], images[chosen])
        out |= flat(name, interval) | {f"{name}_n": int(chosen.sum())}
    return out


def polling_scores(rows: list[dict[str, Any]], settings: tuple[str, ...], baseline: str = NONE) -> list[dict[str, Any]]:
    """Per reported condition and POPE setting: n, the POPE metrics with intervals, for draws their spread, and
    against `baseline` the paired F1 change, flip rates and the drop in p(correct)."""
    frame = pd.DataFrame(rows)
    scores = []
    for setting in settings:
        asked = frame[frame["present"] | frame[SETTINGS].str.split(";").apply(lambda s, setting=setting: setting in s)]
        images = sorted(asked[SAMPLE_ID].unique())
        base = image_counts(asked, [baseline], images) if baseline in set(asked[CONDITION]) else None
        for group, members in _groups(asked).items():
            counts = image_counts(asked, members, images)
            score: dict[str, Any] = {CONDITION: group, "negatives": setting, "draws": len(members),
                                     "n_questions": int((asked[CONDITION] == members[0]).sum()), "n_images": len(images)}
            for metric in POLL_METRICS:
                score |= flat(metric, metric_interval(metric, counts))
            if len(members) > 1:
                draws = [METRICS["f1"](*counts[:, d].sum(axis=0)) for d in range(len(members))]
                spread = intervals.spread(draws)
                score |= {"f1_draws_low": PERCENT * spread.low, "f1_draws_high": PERCENT * spread.high}
            if base is not None and group != baseline:
                score |= flat("f1_change", metric_interval("f1", counts, base)) | transitions(asked, members, baseline)
            scores.append(score)
    return scores


def control_comparisons(rows: list[dict[str, Any]], controls: dict[str, str], settings: tuple[str, ...],
                        baseline: str = NONE) -> list[dict[str, Any]]:
    """Per (reported control, the condition it controls) and setting: F1(condition) - F1(control) and
    Yes->No(condition) - Yes->No(control), paired over images."""
    frame = pd.DataFrame(rows)
    comparisons = []
    for setting in settings:
        asked = frame[frame["present"] | frame[SETTINGS].str.split(";").apply(lambda s, setting=setting: setting in s)]
        images = sorted(asked[SAMPLE_ID].unique())
        groups = _groups(asked)
        for control, target in controls.items():
            if control not in groups or target not in groups:
                continue
            f1 = metric_interval("f1", image_counts(asked, groups[target], images),
                                 image_counts(asked, groups[control], images))
            comparison = {CONDITION: target, "control": control, "negatives": setting, "n_images": len(images)}
            comparison |= flat("f1_difference", f1) | _flip_difference(asked, groups[target], groups[control], baseline)
            comparisons.append(comparison)
    return comparisons


def _flip_difference(frame: pd.DataFrame, target: list[str], control: list[str], baseline: str) -> dict[str, Any]:
    """Yes->No rate of `target` minus that of `control` on the present objects `baseline` says Yes to."""
    base = frame[frame[CONDITION] == baseline].set_index([SAMPLE_ID, "object"])
    eligible = base["present"].to_numpy(bool) & base["answer_yes"].to_numpy(bool)
    flips = [1 - _per_question(frame, conditions, "answer_yes").astype(float).reindex(base.index).to_numpy()
             for conditions in (target, control)]
    images = base.index.get_level_values(SAMPLE_ID).to_numpy()
    interval = intervals.bootstrap_mean((flips[0] - flips[1])[eligible], images[eligible])
    return flat("yes_to_no_difference", interval)


def rate_scores(rows: list[dict[str, Any]], rates: dict[str, tuple[str, str | None]],
                baseline: str = NONE) -> list[dict[str, Any]]:
    """Per reported condition, each rate in %: sum(numerator) / sum(denominator column, or rows when None), over
    images (rows of one sample id resampled together), averaged over draws; with its change from `baseline`."""
    frame = pd.DataFrame(rows)
    scores = []
    for group, members in _groups(frame).items():
        mine = frame[frame[CONDITION].isin(members)]
        score: dict[str, Any] = {CONDITION: group, "draws": len(members), "n": int((mine[CONDITION] == members[0]).sum()),
                                 "n_images": int(mine[SAMPLE_ID].nunique())}
        for name, (numerator, denominator) in rates.items():
            score |= flat(name, _pooled_rate(mine, numerator, denominator))
            if group != baseline and baseline in set(frame[CONDITION]):
                paired = pd.concat([mine, frame[frame[CONDITION] == baseline]])
                sign = np.where(paired[CONDITION] == baseline, -1.0, 1.0 / len(members))
                score |= flat(f"{name}_change", _pooled_rate(paired, numerator, denominator, sign))
        scores.append(score)
    return scores


def _pooled_rate(frame: pd.DataFrame, numerator: str, denominator: str | None,
                 sign: np.ndarray | None = None) -> Interval:
    """sum(numerator) / sum(denominator) with a cluster bootstrap over sample ids. With `sign` (+1/D for the D
    draws of a condition, -1 for the baseline's rows), the paired difference of the two rates."""
    images = frame[SAMPLE_ID].to_numpy()
    units = sorted(set(images))
    index = np.searchsorted(units, images)
    top = frame[numerator].to_numpy(np.float64)
    bottom = frame[denominator].to_numpy(np.float64) if denominator else np.ones(len(frame))
    weights = np.ones(len(frame)) if sign is None else np.abs(sign)
    columns = []
    for part in ([slice(None)] if sign is None else [sign > 0, sign < 0]):
        mask = np.zeros(len(frame), bool)
        mask[part] = True
        columns += [np.bincount(index[mask], (weights * top)[mask], len(units)),
                    np.bincount(index[mask], (weights * bottom)[mask], len(units))]

    def statistic(*data: np.ndarray, axis: int = -1) -> np.ndarray:
        rates = [_ratio(data[i].sum(axis=axis), data[i + 1].sum(axis=axis)) for i in range(0, len(data), 2)]
        return rates[0] - rates[1] if len(rates) == 2 else rates[0]

    method = "bootstrap over images" if sign is None else "paired bootstrap over images"
    return intervals.bootstrap(statistic, tuple(columns), method=method, vectorized=True)


def lost_rate(rows: list[dict[str, Any]], item: Callable[[dict[str, Any]], set], baseline: str = NONE
              ) -> list[dict[str, Any]]:
    """Per reported condition: the share of the items `baseline` has in a sample (answers correct, objects named)
    that the condition loses, averaged over draws, with a cluster bootstrap over images (Neo et al.'s decrease)."""
    by_sample: dict[tuple[str, str], list[set]] = {}
    for row in rows:
        by_sample.setdefault((row[CONDITION], row[SAMPLE_ID]), []).append(item(row))
    base = {sample_id: set().union(*found) for (condition, sample_id), found in by_sample.items() if condition == baseline}
    out = []
    for group, members in _groups(pd.DataFrame(rows)).items():
        if group == baseline:
            continue
        values, images = [], []
        for sample_id, had in base.items():
            kept = [found for member in members for found in by_sample.get((member, sample_id), [])]
            for thing in sorted(had):
                values.append(np.mean([thing not in k for k in kept]))
                images.append(sample_id)
        out.append({CONDITION: group, **flat("lost", intervals.bootstrap_mean(values, images)), "lost_n": len(values)})
    return out
