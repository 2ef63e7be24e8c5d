"""Paired statistics (cnflib.collection.stats) against closed forms and known cases."""
from __future__ import annotations

import numpy as np
import pytest

from cnflib.collection.stats import bootstrap_ci, linear_r2, paired_summary


def test_bootstrap_ci_of_mean_matches_normal_theory():
    x = np.random.default_rng(0).normal(2.0, 1.0, 400)
    low, high = bootstrap_ci(x, np.mean, n_boot=4000)
    se = x.std(ddof=1) / np.sqrt(len(x))
    assert low < x.mean() < high
    assert abs((high - low) - 2 * 1.96 * se) < 0.25 * 2 * 1.96 * se  # within 25% of the normal interval


def test_bootstrap_ci_is_seeded_and_accepts_any_statistic():
    x = np.arange(50.0)
    assert bootstrap_ci(x, seed=1) == bootstrap_ci(x, seed=1)
    low, high = bootstrap_ci(x, lambda v: float(np.max(v)), n_boot=200)
    assert high == 49.0 and low <= 49.0
    with pytest.raises(ValueError):
        bootstrap_ci([1.0])
    with pytest.raises(ValueError):
        bootstrap_ci(x, level=1.5)


def test_paired_summary_signs_and_wins():
    control = np.linspace(1.0, 2.0, 100)
    s = paired_summary(control - 0.1, control)
    assert s["median"] == pytest.approx(-0.1) and s["mean"] == pytest.approx(-0.1)
    assert s["median_low"] == pytest.approx(-0.1) and s["median_high"] == pytest.approx(-0.1)
    assert s["win_share"] == 1.0 and s["n"] == 100
    rng = np.random.default_rng(1)
    noise = paired_summary(control + rng.normal(0, 0.1, 100), control)  # no effect: intervals cover 0
    assert noise["median_low"] < 0 < noise["median_high"] and noise["mean_low"] < 0 < noise["mean_high"]
    with pytest.raises(ValueError):
        paired_summary(control, control[:10])


def test_linear_r2_exact_fit_and_no_information():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 3))
    y = np.column_stack([x @ [1.0, -2.0, 0.5] + 3.0, rng.normal(size=3000)])
    r2 = linear_r2(x[:2000], y[:2000], x[2000:], y[2000:])
    assert r2[0] == pytest.approx(1.0) and abs(r2[1]) < 0.02
    assert linear_r2(x[:2000], y[:2000, 0], x[2000:], y[2000:, 0]).shape == (1,)
