"""Mode-collapse metric (Srivastava et al. 2017, VEEGAN; as used by Sparse Flows).

Each mode is a Gaussian whose mean ``μ`` and covariance ``Σ`` are estimated from the data. A
sample's distance to a mode is measured in *directional* standard deviations, i.e. the distance
``‖x − μ‖`` divided by the mode's standard deviation along ``u = (x − μ)/‖x − μ‖``:

    d(x, μ, Σ) = ‖x − μ‖ / sqrt(uᵀ Σ u) = ‖x − μ‖² / sqrt((x − μ)ᵀ Σ (x − μ)).

A sample is *good at level k* if its smallest distance to a mode is at most ``k``; a mode is
*captured* at level k if at least one good sample is nearest to it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import pandas as pd
import torch
from torch import Tensor

LEVELS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)


@dataclass(frozen=True)
class Modes:
    """Gaussian modes: ``means`` [k, d] and ``covariances`` [k, d, d]."""

    means: Tensor
    covariances: Tensor

    @classmethod
    def from_data(cls, x: Tensor, centers: Tensor) -> "Modes":
        """Estimate each mode's mean and covariance from data ``x`` [n, d], assigning every point
        to its nearest of the known ``centers`` [k, d] (e.g. ``cnflib.data.toy.modes``)."""
        label = torch.cdist(x, centers).argmin(1)
        means, covs = [], []
        for j in range(len(centers)):
            points = x[label == j]
            if len(points) < x.shape[1] + 1:
                raise ValueError(f"mode {j} has only {len(points)} data points; draw more data")
            means.append(points.mean(0))
            covs.append(torch.cov(points.T).reshape(x.shape[1], x.shape[1]))
        return cls(torch.stack(means), torch.stack(covs))

    def distances(self, x: Tensor) -> Tensor:
        """Directional-standard-deviation distance of every sample to every mode: [n, d] -> [n, k]."""
        diff = x[:, None, :] - self.means[None]  # [n, k, d]
        sq = (diff**2).sum(-1)
        quad = torch.einsum("nki,kij,nkj->nk", diff, self.covariances, diff)
        return sq / quad.clamp_min(1e-30).sqrt()


@dataclass(frozen=True)
class ModeReport:
    """``good``: fraction of good samples per level k; ``captured``: modes with a good sample per
    level; ``missing``: indices of the modes without any good sample at ``level``."""

    good: dict[float, float]
    captured: dict[float, int]
    missing: list[int]
    level: float
    n_modes: int

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat metrics: ``{prefix}good@k`` (percent) and ``{prefix}modes@k``."""
        out = {f"{prefix}good@{k:g}": 100.0 * v for k, v in self.good.items()}
        out.update({f"{prefix}modes@{k:g}": float(v) for k, v in self.captured.items()})
        return out


def mode_report(samples: Tensor, modes: Modes, levels: Sequence[float] = LEVELS, level: float = 3.0) -> ModeReport:
    """The mode-collapse metric of ``samples`` [n, d] against ``modes`` (Sparse Flows: ~20,000
    samples). ``missing`` lists the modes that received no good sample at ``level`` std."""
    dist = modes.distances(samples)
    nearest, which = dist.min(1)
    k = len(modes.means)
    good, captured = {}, {}
    for lv in sorted({*levels, level}):
        ok = nearest <= lv
        good[float(lv)] = ok.float().mean().item()
        captured[float(lv)] = int(torch.bincount(which[ok], minlength=k).gt(0).sum())
    hit = torch.bincount(which[nearest <= level], minlength=k).gt(0)
    return ModeReport(good, captured, [int(j) for j in torch.nonzero(~hit).flatten()], float(level), k)


def mode_table(reports: dict[float, ModeReport]) -> pd.DataFrame:
    """One row per key (e.g. prune ratio): percent good samples and modes captured per level."""
    return pd.DataFrame({key: r.as_dict() for key, r in reports.items()}).T
