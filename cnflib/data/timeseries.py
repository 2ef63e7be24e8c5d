"""Time series: the bi-directional spirals of InfoCNF App. E (after the Latent ODE demo of Chen et al. 2018).

Each ground-truth spiral is a path of ``n_total`` points on a grid of angles over ``[0, t_max]``
(the papers: 1,000 points, ``t_max = 6 pi``). Half of them turn clockwise and half
counter-clockwise:

* clockwise: angle ``theta = t_max + 1 - t`` (decreasing), ``R = a + b * 50 / theta``,
  ``x = R cos(theta) - 5``, ``y = R sin(theta)``;
* counter-clockwise: angle ``theta = t`` (increasing), ``R = a + b * theta``,
  ``x = R cos(theta) + 5``, ``y = R sin(theta)``;

with ``a ~ N(1.0, 0.08)`` and ``b ~ N(0.25, 0.03)``. The clockwise angle runs backwards from
``t_max + 1`` so that ``50 / theta`` stays finite (as in the Latent ODE demo). From each spiral one
window of ``window`` consecutive grid points is observed with Gaussian noise (std 0.3); the next
``horizon`` noise-free points are held out to measure extrapolation. The labels are
``(a, b, direction)`` with direction ``+1`` counter-clockwise and ``-1`` clockwise.

That placement (``placement="paper"``) gives the direction away: the two families sit around
different centres, so the first observed point alone tells them apart. With
``placement="shared"`` both families are centred at the origin, a clockwise spiral is the mirror
image ``(x, -y)`` of the counter-clockwise one (both ``R = a + b * theta``), and every spiral is
rotated by its own uniform angle ``phi ~ U[0, 2 pi)``. Then the distribution of any single point is
rotation invariant with the same radius law for both directions: position carries no information
about the direction, only the motion through the window does. (Under a random rotation ``a`` and
the start angle shift the radius in the same way, so ``a`` is not identifiable from a window; the
growth per radian ``b`` is, and with the direction it is what sets the continuation.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

A_MEAN, A_STD = 1.0, 0.08
B_MEAN, B_STD = 0.25, 0.03
CENTER_OFFSET = 5.0
PLACEMENTS = ("paper", "shared")


@dataclass(frozen=True)
class SpiralSplit:
    """One split of the spiral set (``n`` spirals, ``W`` observed and ``H`` held-out steps).

    Attributes:
        observed: noisy observations [n, W, 2].
        truth: the noise-free path under the observations [n, W, 2].
        future: the noise-free continuation after the window [n, H, 2] (extrapolation targets).
        labels: ``(a, b, direction)`` [n, 3]; direction +1 counter-clockwise, -1 clockwise.
        start: index of each window's first point on the ground-truth grid [n].
    """

    observed: Tensor
    truth: Tensor
    future: Tensor
    labels: Tensor
    start: Tensor

    def __len__(self) -> int:
        return self.observed.shape[0]


@dataclass(frozen=True)
class SpiralData:
    """Train/test splits and the shared time grids (window starts at time 0).

    Attributes:
        t_observed: observation times [W] (``0, dt, ..., (W-1) dt``).
        t_future: held-out times [H] (``W dt, ..., (W+H-1) dt``).
        train, test: the two :class:`SpiralSplit`.
    """

    t_observed: Tensor
    t_future: Tensor
    train: SpiralSplit
    test: SpiralSplit

    @property
    def t_all(self) -> Tensor:
        """Observed then held-out times [W + H]."""
        return torch.cat([self.t_observed, self.t_future])


def spiral_paths(a: Tensor, b: Tensor, clockwise: Tensor, n_total: int = 1000,
                 t_max: float = 6 * math.pi, placement: str = "paper",
                 rotation: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Noise-free spirals on the grid ``t = linspace(0, t_max, n_total)``.

    Arguments:
        a, b: radius parameters [n].
        clockwise: booleans [n].
        placement: "paper" (InfoCNF App. E / the Latent ODE demo: centres at x = -5 and +5, the
            clockwise radius ``a + 50 b / theta``) or "shared" (centre 0, both ``R = a + b t``, the
            clockwise path the mirror image ``(x, -y)`` of the counter-clockwise one, then rotated).
        rotation: angles [n] by which the "shared" paths are rotated about the origin (default 0).

    Returns:
        ``(t [n_total], paths [n, n_total, 2])``.
    """
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    t = torch.linspace(0.0, t_max, n_total)
    if placement == "shared":
        radius = a[:, None] + b[:, None] * t[None]  # [n, T]
        sense = torch.where(clockwise, -1.0, 1.0)[:, None]
        angle = sense * t[None] + (0.0 if rotation is None else rotation[:, None])
        return t, torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], -1)
    theta_cw = (t_max + 1.0 - t)[None]  # [1, T], decreasing from t_max + 1 to 1
    theta_ccw = t[None]
    radius_cw = a[:, None] + b[:, None] * 50.0 / theta_cw
    radius_ccw = a[:, None] + b[:, None] * theta_ccw
    cw = torch.stack([radius_cw * torch.cos(theta_cw) - CENTER_OFFSET, radius_cw * torch.sin(theta_cw)], -1)
    ccw = torch.stack([radius_ccw * torch.cos(theta_ccw) + CENTER_OFFSET, radius_ccw * torch.sin(theta_ccw)], -1)
    return t, torch.where(clockwise[:, None, None], cw, ccw)


def standardize_labels(labels: Tensor) -> Tensor:
    """Labels ``(a, b, direction)`` [n, 3] -> zero-mean, unit-scale codes [n, 3] (direction stays +-1)."""
    a = (labels[:, 0] - A_MEAN) / A_STD
    b = (labels[:, 1] - B_MEAN) / B_STD
    return torch.stack([a, b, labels[:, 2]], 1)


def _split(paths: Tensor, labels: Tensor, start: Tensor, window: int, horizon: int,
           noise_std: float, generator: Optional[torch.Generator]) -> SpiralSplit:
    offsets = torch.arange(window + horizon)
    index = (start[:, None] + offsets[None]).unsqueeze(-1).expand(-1, -1, 2)
    segment = torch.gather(paths, 1, index)  # [n, W + H, 2]
    truth, future = segment[:, :window], segment[:, window:]
    observed = truth + noise_std * torch.randn(truth.shape, generator=generator)
    return SpiralSplit(observed, truth, future, labels, start)


def make_spirals(n_spirals: int = 5000, n_total: int = 1000, window: int = 200, horizon: int = 100,
                 noise_std: float = 0.3, test_fraction: float = 0.2, t_max: float = 6 * math.pi,
                 placement: str = "paper", generator: Optional[torch.Generator] = None) -> SpiralData:
    """The bi-directional spiral set (InfoCNF App. E; the paper: 5,000 spirals, 1,000 points, window 200).

    Half the spirals (in random order) turn clockwise. ``placement`` is "paper" or "shared" (see
    :func:`spiral_paths`; "shared" draws one uniform rotation per spiral, after the windows' starts). Each window starts uniformly at random on
    ``0 .. n_total - window - horizon``, so its ``horizon`` continuation exists. The last
    ``round(test_fraction * n_spirals)`` spirals form the test split.
    """
    if window + horizon > n_total:
        raise ValueError(f"window + horizon = {window + horizon} exceeds the path length n_total = {n_total}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    a = A_MEAN + A_STD * torch.randn(n_spirals, generator=generator)
    b = B_MEAN + B_STD * torch.randn(n_spirals, generator=generator)
    clockwise = torch.arange(n_spirals) < n_spirals // 2
    clockwise = clockwise[torch.randperm(n_spirals, generator=generator)]
    if placement not in PLACEMENTS:
        raise ValueError(f"placement must be one of {PLACEMENTS}, got {placement!r}")
    start = torch.randint(0, n_total - window - horizon + 1, (n_spirals,), generator=generator)
    rotation = 2 * math.pi * torch.rand(n_spirals, generator=generator) if placement == "shared" else None
    t, paths = spiral_paths(a, b, clockwise, n_total, t_max, placement, rotation)
    labels = torch.stack([a, b, torch.where(clockwise, -1.0, 1.0)], 1)
    n_test = round(test_fraction * n_spirals)
    if not 0 < n_test < n_spirals:
        raise ValueError(f"test_fraction {test_fraction} leaves an empty split of {n_spirals} spirals")
    parts = [slice(0, n_spirals - n_test), slice(n_spirals - n_test, n_spirals)]
    train, test = (_split(paths[s], labels[s], start[s], window, horizon, noise_std, generator) for s in parts)
    dt = t[1] - t[0]
    return SpiralData(t_observed=dt * torch.arange(window), t_future=dt * torch.arange(window, window + horizon),
                      train=train, test=test)
