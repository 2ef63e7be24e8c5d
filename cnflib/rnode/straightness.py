"""How straight a flow's particle paths are (the quantity RNODE's kinetic term optimizes).

For a path ``z(t)`` on [0, T] with chord ``c = z(T) - z(0)``:

* ``straightness = |c| / length`` lies in (0, 1] and is 1 only for a straight segment;
* ``kinetic_ratio = T * int |dz/dt|^2 dt / |c|^2`` is >= 1 (Cauchy–Schwarz) and is 1 only for a
  straight segment travelled at constant speed, the Benamou–Brenier optimum.

Both are computed from a sampled trajectory [steps, n, D] (e.g. ``CNF.trajectory``) by finite
differences, so fine time grids give the continuous values.
"""
from __future__ import annotations

from torch import Tensor


def _segments(trajectory: Tensor) -> Tensor:
    if trajectory.dim() < 3 or trajectory.shape[0] < 2:
        raise ValueError(f"expected a trajectory [steps >= 2, n, D...], got shape {tuple(trajectory.shape)}")
    flat = trajectory.reshape(trajectory.shape[0], trajectory.shape[1], -1)
    return flat[1:] - flat[:-1]  # [steps - 1, n, D]


def path_length(trajectory: Tensor) -> Tensor:
    """Polyline length of each path. trajectory: [steps, n, D] -> [n]."""
    return _segments(trajectory).norm(dim=-1).sum(0)


def chord_length(trajectory: Tensor) -> Tensor:
    """Distance between each path's end points. trajectory: [steps, n, D] -> [n]."""
    return _segments(trajectory).sum(0).norm(dim=-1)


def straightness(trajectory: Tensor, eps: float = 1e-12) -> Tensor:
    """Chord over path length, in (0, 1]. trajectory: [steps, n, D] -> [n]."""
    return chord_length(trajectory) / path_length(trajectory).clamp_min(eps)


def kinetic_ratio(trajectory: Tensor, eps: float = 1e-12) -> Tensor:
    """Kinetic energy over that of the straight constant-speed path, >= 1, on a uniform time grid.

    With steps ``dz_k`` of equal duration ``dt``: ``(K - 1) * sum |dz_k|^2 / |sum dz_k|^2``, where
    ``K - 1`` is the number of segments. trajectory: [steps, n, D] -> [n].
    """
    seg = _segments(trajectory)
    return seg.shape[0] * seg.pow(2).sum(-1).sum(0) / seg.sum(0).pow(2).sum(-1).clamp_min(eps)
