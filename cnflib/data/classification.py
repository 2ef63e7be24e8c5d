"""Classification sets for Neural ODE classifiers.

:func:`nested_annuli` is the set of Dupont et al. (2019), "Augmented Neural ODEs", Sec. 4:
``g(x) = -1`` for ``|x| <= r1`` and ``g(x) = +1`` for ``r2 <= |x| <= r3``. The outer class
encloses the inner one, so no homeomorphism of the plane followed by a linear readout can
separate them (their Proposition 2): a plain Neural ODE in ``R^d`` must fail, an augmented one
in ``R^(d+p)`` need not. Labels here are ``0`` (inner) and ``1`` (outer), for a logistic loss.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _ball_points(n: int, dim: int, r_min: float, r_max: float, generator: Optional[torch.Generator]) -> Tensor:
    """``n`` points with a uniform random direction and a radius uniform in [r_min, r_max]: [n, dim]."""
    direction = torch.randn(n, dim, generator=generator)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp_min(1e-12)
    radius = r_min + (r_max - r_min) * torch.rand(n, 1, generator=generator)
    return direction * radius


def nested_annuli(n_inner: int = 500, n_outer: int = 1000, dim: int = 2, r1: float = 0.5, r2: float = 1.0,
                  r3: float = 1.5, generator: Optional[torch.Generator] = None) -> tuple[Tensor, Tensor]:
    """A ball of radius ``r1`` (label 0) inside a shell ``r2 <= |x| <= r3`` (label 1).

    As in Dupont et al. (2019), radii are uniform in their interval (not uniform in area) and
    directions uniform on the sphere; the default radii 0.5, 1.0, 1.5 are theirs.

    Returns:
        ``(x, y)``: points Tensor[n_inner + n_outer, dim] and float labels Tensor[n_inner + n_outer],
        shuffled.

    Raises:
        ValueError: the radii are not ``0 < r1 < r2 < r3``.
    """
    if not 0 < r1 < r2 < r3:
        raise ValueError(f"need 0 < r1 < r2 < r3, got r1={r1}, r2={r2}, r3={r3}")
    x = torch.cat([_ball_points(n_inner, dim, 0.0, r1, generator), _ball_points(n_outer, dim, r2, r3, generator)])
    y = torch.cat([torch.zeros(n_inner), torch.ones(n_outer)])
    order = torch.randperm(len(x), generator=generator)
    return x[order], y[order]


def best_threshold_accuracy(x: Tensor, y: Tensor) -> float:
    """The best accuracy of any 1-D rule ``1[x > c]`` or ``1[x < c]`` on points x [n] (or [n, 1]), labels y [n].

    A plain Neural ODE on R followed by a linear readout is such a rule (its flow map is
    increasing), so this bounds its accuracy on 1-D data (Dupont et al. 2019, Sec. 3).
    """
    order = torch.argsort(x.reshape(-1))
    y = y[order].float()
    # Threshold after the first k points (k = 0..n): "1 above" gets (#0 in the first k) + (#1 in the rest).
    zeros_before = torch.cat([y.new_zeros(1), torch.cumsum(1 - y, 0)])
    ones_after = y.sum() - torch.cat([y.new_zeros(1), torch.cumsum(y, 0)])
    above = (zeros_before + ones_after) / len(y)
    return float(torch.maximum(above, 1 - above).max())
