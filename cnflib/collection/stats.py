"""Paired comparisons on the same test items: bootstrap intervals, summaries of per-item
differences and the R^2 of a linear read-out (used by notebook 05 and its search script).

All functions take NumPy arrays (or anything ``numpy.asarray`` accepts) and return plain floats,
so that their results can go straight into :func:`cnflib.collection.report.record_metrics`.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

Statistic = Callable[[np.ndarray], float]


def bootstrap_ci(values, statistic: Statistic = np.median, n_boot: int = 2000, level: float = 0.95,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over the items ``values`` [n].

    Draws ``n_boot`` resamples of the n items with replacement (``numpy.random.default_rng(seed)``)
    and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` quantiles of the statistic.
    """
    values = np.asarray(values, dtype=float)
    if values.ndim != 1 or len(values) < 2:
        raise ValueError(f"bootstrap_ci needs a 1-D array of at least 2 items, got shape {values.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    index = rng.integers(0, len(values), size=(n_boot, len(values)))
    stats = np.apply_along_axis(statistic, 1, values[index]) if statistic not in (np.median, np.mean) \
        else statistic(values[index], axis=1)
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def paired_summary(treatment, control, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Summary of the per-item differences ``d = treatment - control`` (both [n], same items, same order).

    Lower is better (errors): a "win" is ``d < 0``. Returns ``median``, ``mean``, the bootstrap
    intervals ``median_low/median_high`` and ``mean_low/mean_high`` (:func:`bootstrap_ci`),
    ``win_share`` (fraction of items with ``d < 0``), ``n`` and the two medians
    ``treatment_median``, ``control_median``.
    """
    treatment, control = np.asarray(treatment, dtype=float), np.asarray(control, dtype=float)
    if treatment.shape != control.shape or treatment.ndim != 1:
        raise ValueError(f"paired_summary needs two 1-D arrays of one shape, got {treatment.shape} and {control.shape}")
    d = treatment - control
    med_low, med_high = bootstrap_ci(d, np.median, n_boot, level, seed)
    mean_low, mean_high = bootstrap_ci(d, np.mean, n_boot, level, seed)
    return {"n": int(len(d)), "median": float(np.median(d)), "median_low": med_low, "median_high": med_high,
            "mean": float(d.mean()), "mean_low": mean_low, "mean_high": mean_high,
            "win_share": float((d < 0).mean()), "treatment_median": float(np.median(treatment)),
            "control_median": float(np.median(control))}


def linear_r2(x_train, y_train, x_test, y_test) -> np.ndarray:
    """R^2 on a test set of the least-squares affine map from features to targets fit on a training set.

    x_train [n, p], y_train [n, k], x_test [m, p], y_test [m, k] -> R^2 [k], one per target:
    ``1 - sum (y - y_hat)^2 / sum (y - mean_test(y))^2`` (0: no better than the test mean; can be < 0).
    """
    x_train, x_test = np.asarray(x_train, dtype=float), np.asarray(x_test, dtype=float)
    y_train, y_test = np.atleast_2d(np.asarray(y_train, dtype=float).T).T, np.atleast_2d(np.asarray(y_test, dtype=float).T).T
    design = np.column_stack([x_train, np.ones(len(x_train))])
    coef, *_ = np.linalg.lstsq(design, y_train, rcond=None)
    pred = np.column_stack([x_test, np.ones(len(x_test))]) @ coef
    return 1.0 - ((y_test - pred) ** 2).sum(0) / ((y_test - y_test.mean(0)) ** 2).sum(0)
