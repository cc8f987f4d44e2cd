"""95% intervals for every headline number: one `Interval` type and the few ways of getting one.

- `bootstrap_mean`: the mean of per-item values, resampling the independent units (images); with `groups`, items
  (tokens, keys) are pooled within their group and whole groups are resampled (a cluster bootstrap);
- `bootstrap`: any statistic of paired per-unit arrays (e.g. per-class IoU from per-episode intersections and
  unions), resampling units;
- `paired_difference`: the mean difference of two conditions measured on the same units (knockout vs control);
- `binomial`: the exact (Clopper-Pearson) interval of a proportion of independent trials;
- `spread`: the mean and the central 95% of draws of a random baseline (what chance gives, not the uncertainty of
  its mean).

Bootstraps are scipy.stats.bootstrap's percentile intervals with a fixed seed, so reruns give the same numbers.
Percentile, not BCa: BCa's jackknife fails (NaN) on the small, tied or ratio statistics these analyses produce,
and one method everywhere keeps the intervals comparable.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import xarray as xr
from scipy import stats

CONFIDENCE = 0.95
N_RESAMPLES = 2000
INTERVAL_FIELDS = ("estimate", "low", "high", "n")  # the variables of `stack`


@dataclass(frozen=True)
class Interval:
    """A point estimate, its interval [low, high] at `CONFIDENCE`, the number of independent units `n` behind it
    and how the interval was obtained. NaN everywhere when there were no units."""

    estimate: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self) -> dict[str, float | int | str | None]:
        """JSON-ready fields (NaN as None)."""
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(self).items()}


def empty(method: str) -> Interval:
    """The interval of no data."""
    return Interval(math.nan, math.nan, math.nan, 0, method)


def bootstrap_mean(values: Sequence[float] | np.ndarray, groups: Sequence | np.ndarray | None = None,
                   n_resamples: int = N_RESAMPLES, seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` (NaN dropped) with a bootstrap interval over units.

    Without `groups` every value is a unit. With `groups` (one label per value, e.g. the image a token belongs to)
    the estimate is the pooled mean of all values and the bootstrap resamples whole groups; `n` counts groups.
    """
    values = np.asarray(values, np.float64)
    labels = np.arange(len(values)) if groups is None else np.asarray(groups)
    if labels.shape != values.shape:
        raise ValueError(f"groups has shape {labels.shape}, values {values.shape}")
    keep = ~np.isnan(values)
    values, labels = values[keep], labels[keep]
    method = "bootstrap over units" if groups is None else "cluster bootstrap over groups"
    if not len(values):
        return empty(method)
    _, index = np.unique(labels, return_inverse=True)
    sums = np.bincount(index, weights=values)
    counts = np.bincount(index).astype(np.float64)
    return bootstrap(_pooled_mean, (sums, counts), n_resamples, seed, confidence, method, vectorized=True)


def _pooled_mean(sums: np.ndarray, counts: np.ndarray, axis: int = -1) -> np.ndarray:
    return sums.sum(axis=axis) / counts.sum(axis=axis)


def bootstrap(statistic: Callable[..., float], data: tuple[np.ndarray, ...], n_resamples: int = N_RESAMPLES,
              seed: int = 0, confidence: float = CONFIDENCE, method: str = "bootstrap over units",
              vectorized: bool = False) -> Interval:
    """`statistic(*data)` with a percentile bootstrap interval, resampling the units (rows) shared by every array
    of `data` together. `statistic` takes 1-D arrays; `vectorized`: it also takes an `axis` keyword and reduces
    along it (scipy then evaluates all resamples at once)."""
    data = tuple(np.asarray(d, np.float64) for d in data)
    n = len(data[0])
    if n == 0:
        return empty(method)
    estimate = float(statistic(*data))
    if n == 1 or all(np.all(d == d[0]) for d in data):  # every resample equals the data
        return Interval(estimate, estimate, estimate, n, method)
    result = stats.bootstrap(data, statistic, n_resamples=n_resamples, paired=True, vectorized=vectorized,
                             confidence_level=confidence, method="percentile", rng=np.random.default_rng(seed))
    interval = result.confidence_interval
    return Interval(estimate, float(interval.low), float(interval.high), n, method)


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_resamples: int = N_RESAMPLES,
                      seed: int = 0, confidence: float = CONFIDENCE) -> Interval:
    """Mean of a - b over units measured under both conditions (pairs with a NaN dropped), bootstrap interval."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values differ in shape: {a.shape} vs {b.shape}")
    interval = bootstrap_mean(a - b, None, n_resamples, seed, confidence)
    return Interval(interval.estimate, interval.low, interval.high, interval.n, "paired bootstrap of the difference")


def binomial(successes: int, trials: int, confidence: float = CONFIDENCE) -> Interval:
    """The proportion successes / trials with its exact Clopper-Pearson interval."""
    method = "exact binomial (Clopper-Pearson)"
    if trials <= 0:
        return empty(method)
    if not 0 <= successes <= trials:
        raise ValueError(f"{successes} successes in {trials} trials")
    interval = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence, method="exact")
    return Interval(successes / trials, float(interval.low), float(interval.high), int(trials), method)


def spread(draws: Sequence[float] | np.ndarray, confidence: float = CONFIDENCE) -> Interval:
    """Mean of the draws of a random baseline and the central `confidence` share of them (NaN dropped); `n` is
    the number of draws."""
    draws = np.asarray(draws, np.float64)
    draws = draws[~np.isnan(draws)]
    method = f"central {confidence:.0%} of draws"
    if not len(draws):
        return empty(method)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(draws.mean()), float(low), float(high), len(draws), method)


def stack(intervals: Sequence[Interval], dim: str, coords: Sequence | np.ndarray) -> xr.Dataset:
    """Intervals along one dimension (e.g. a curve over layers) as a Dataset of `estimate`, `low`, `high`, `n`."""
    if len(intervals) != len(coords):
        raise ValueError(f"{len(intervals)} intervals for {len(coords)} coordinates")
    data = {name: (dim, np.array([getattr(i, name) for i in intervals])) for name in INTERVAL_FIELDS}
    methods = sorted({i.method for i in intervals})
    return xr.Dataset(data, coords={dim: np.asarray(coords)}, attrs={"interval": ", ".join(methods),
                                                                       "confidence": CONFIDENCE})


def as_json(curve: xr.Dataset) -> dict[str, list]:
    """A `stack`ed curve as JSON lists: its coordinate and estimate, low, high, n (NaN as None)."""
    (dim,) = curve[INTERVAL_FIELDS[0]].dims
    out: dict[str, list] = {dim: np.asarray(curve[dim].values).tolist()}
    for name in INTERVAL_FIELDS:
        out[name] = [None if isinstance(v, float) and math.isnan(v) else v for v in curve[name].values.tolist()]
    return out
