"""Intervals against their definitions: Clopper-Pearson from the beta quantiles, normal-theory widths for large
bootstraps, groups resampled whole, percentiles of baseline draws."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from analyses.intervals import Interval, as_json, binomial, bootstrap, bootstrap_mean, paired_difference, spread, stack


def test_binomial_is_clopper_pearson():
    interval = binomial(3, 10)
    # Clopper-Pearson: the 2.5% quantile of Beta(k, n-k+1) and the 97.5% quantile of Beta(k+1, n-k)
    assert interval.estimate == 0.3 and interval.n == 10
    assert interval.low == pytest.approx(beta.ppf(0.025, 3, 8), rel=1e-9)
    assert interval.high == pytest.approx(beta.ppf(0.975, 4, 7), rel=1e-9)
    none = binomial(0, 20)
    assert none.low == 0 and none.high == pytest.approx(1 - 0.025 ** (1 / 20), rel=1e-9)
    assert math.isnan(binomial(0, 0).estimate)
    with pytest.raises(ValueError):
        binomial(5, 3)


def test_bootstrap_mean_has_the_normal_theory_width():
    values = np.tile([0.0, 1.0], 200)  # mean 0.5, sd 0.5, n 400: standard error 0.025
    interval = bootstrap_mean(values)
    assert interval.estimate == 0.5 and interval.n == 400
    assert interval.low == pytest.approx(0.5 - 1.96 * 0.025, abs=0.01)
    assert interval.high == pytest.approx(0.5 + 1.96 * 0.025, abs=0.01)


def test_groups_are_resampled_whole():
    """20 images of 20 identical tokens each: 20 independent units (standard error 0.5 / sqrt(20)), not 400."""
    values = np.repeat(np.tile([0.0, 1.0], 10), 20)
    groups = np.repeat(np.arange(20), 20)
    interval = bootstrap_mean(values, groups)
    assert interval.n == 20 and interval.estimate == 0.5
    assert interval.high - interval.low == pytest.approx(2 * 1.96 * 0.5 / math.sqrt(20), rel=0.2)
    # the pooled mean weighs groups by their size: 3 tokens at 1 and 1 token at 0 give 0.75, not 0.5
    assert bootstrap_mean([1, 1, 1, 0], ["a", "a", "a", "b"]).estimate == 0.75


def test_nan_constant_and_empty_inputs():
    assert bootstrap_mean([np.nan, 2.0, 2.0]) == Interval(2.0, 2.0, 2.0, 2, "bootstrap over units")
    assert bootstrap_mean([]).n == 0 and math.isnan(bootstrap_mean([]).low)
    assert bootstrap_mean([]).as_dict()["estimate"] is None


def test_paired_difference_and_general_statistic():
    a = np.array([3.0, 5.0, 4.0, 6.0])
    constant = paired_difference(a, a - 1)
    assert (constant.estimate, constant.low, constant.high, constant.n) == (1.0, 1.0, 1.0, 4)
    varied = paired_difference(a, [1.0, 1.0, 1.0, 1.0])
    assert varied.estimate == 3.5 and 2.0 <= varied.low < 3.5 < varied.high <= 5.0
    ratio = bootstrap(lambda i, u: i.sum() / u.sum(), (np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 4.0])))
    assert ratio.estimate == 0.6 and ratio.low <= 0.6 <= ratio.high


def test_spread_is_the_central_share_of_draws():
    interval = spread(np.arange(101.0))  # linear-interpolated 2.5th and 97.5th percentiles of 0..100
    assert (interval.estimate, interval.n) == (50.0, 101)
    assert (interval.low, interval.high) == pytest.approx((2.5, 97.5), abs=1e-12)


def test_stack_and_json():
    curve = stack([binomial(1, 2), binomial(0, 0)], "layer", [3, 4])
    assert list(curve.layer.values) == [3, 4] and curve.n.values.tolist() == [2, 0]
    as_list = as_json(curve)
    assert as_list["layer"] == [3, 4] and as_list["estimate"] == [0.5, None]
