"""Mode-collapse metric (Srivastava et al. 2017, VEEGAN; as used by Sparse Flows).

Each mode j is a Gaussian with mean ``μ_j`` and covariance ``Σ_j``, either those of the generating
mixture (:meth:`Modes.from_mixture`, exact: ``cnflib.data.toy`` knows its mixtures) or estimated from
data (:meth:`Modes.from_data`, which truncates modes that overlap). A sample's distance to a mode is
measured in standard deviations, by one of two metrics:

* ``"directional"`` (VEEGAN's, the default): ``‖x − μ‖`` over the mode's standard deviation along
  ``u = (x − μ)/‖x − μ‖``,
  ``d(x, μ, Σ) = ‖x − μ‖ / sqrt(uᵀ Σ u) = ‖x − μ‖² / sqrt((x − μ)ᵀ Σ (x − μ))``;
* ``"mahalanobis"``: ``d(x, μ, Σ) = sqrt((x − μ)ᵀ Σ⁻¹ (x − μ))``, invariant under affine changes of
  coordinates (e.g. standardization); for isotropic ``Σ = σ² I`` both equal ``‖x − μ‖ / σ``.

A sample is *good at level k* if its smallest distance to a mode is at most ``k``; a mode is
*captured* at level k if at least ``min_count`` good samples are nearest to it. The *spread of mass*
over modes is the Kullback-Leibler divergence of the good samples' distribution over their nearest
modes, ``p_j``, from the mixture weights ``w_j`` (uniform for every 2-D toy mixture):

    KL(p ‖ w) = Σ_j p_j log(p_j / w_j)   (nats; 0 when mass is spread as in the data, log(K/m) when it
                                          sits evenly on m of K equally weighted modes).

With N good samples drawn from the mixture itself its expectation is about ``(K − 1) / (2N)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional, Sequence, Union

import pandas as pd
import torch
from torch import Tensor

from cnflib.core._validation import check_choice, check_count
from cnflib.data.toy import GaussianMixture, mixture

LEVELS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0, 5.0)
METRICS: tuple[str, ...] = ("directional", "mahalanobis")


@dataclass(frozen=True)
class Modes:
    """Gaussian modes: ``means`` [k, d], ``covariances`` [k, d, d] and the mixture ``weights`` [k]
    the sample mass is compared with (None: uniform)."""

    means: Tensor
    covariances: Tensor
    weights: Optional[Tensor] = None

    @classmethod
    def from_data(cls, x: Tensor, centers: Tensor) -> "Modes":
        """Estimate each mode's mean and covariance from data ``x`` [n, d], assigning every point
        to its nearest of the known ``centers`` [k, d] (e.g. ``cnflib.data.toy.modes``). Overlapping
        modes are truncated by the assignment: prefer :meth:`from_mixture` where the mixture is known."""
        label = torch.cdist(x, centers).argmin(1)
        means, covs = [], []
        for j in range(len(centers)):
            points = x[label == j]
            if len(points) < x.shape[1] + 1:
                raise ValueError(f"mode {j} has only {len(points)} data points; draw more data")
            means.append(points.mean(0))
            covs.append(torch.cov(points.T).reshape(x.shape[1], x.shape[1]))
        return cls(torch.stack(means), torch.stack(covs))

    @classmethod
    def from_mixture(cls, source: Union[str, GaussianMixture], loc: Optional[Tensor] = None,
                     scale: Optional[Tensor] = None) -> "Modes":
        """The exact modes of a generating mixture (a ``cnflib.data.toy`` mixture name or a
        :class:`~cnflib.data.toy.GaussianMixture`), in the coordinates ``x' = (x − loc) / scale``
        (``loc``, ``scale``: [d] or scalars, e.g. a training set's mean and std; default identity):
        means ``(μ_j − loc) / scale`` [k, d], covariances ``S⁻¹ σ_j² I S⁻¹`` with ``S = diag(scale)``
        [k, d, d], and the mixture weights [k]."""
        mix = mixture(source) if isinstance(source, str) else source
        means, covs = mix.centers.clone(), mix.covariances()
        d = means.shape[1]
        loc = torch.zeros(d) if loc is None else torch.as_tensor(loc, dtype=means.dtype).expand(d)
        scale = torch.ones(d) if scale is None else torch.as_tensor(scale, dtype=means.dtype).expand(d)
        if not bool((scale > 0).all()):
            raise ValueError(f"scale must be > 0 in every coordinate, got {scale.tolist()}")
        inv = 1.0 / scale
        return cls((means - loc) * inv, covs * inv[:, None] * inv[None, :], mix.weights.clone())

    def distances(self, x: Tensor, metric: str = "directional") -> Tensor:
        """Distance in standard deviations of every sample to every mode: [n, d] -> [n, k]
        (``metric``: ``"directional"`` or ``"mahalanobis"``, see the module docstring)."""
        check_choice("mode distance metric", metric, METRICS)
        diff = x[:, None, :] - self.means[None]  # [n, k, d]
        if metric == "mahalanobis":
            precision = torch.linalg.inv(self.covariances)  # [k, d, d]
            return torch.einsum("nki,kij,nkj->nk", diff, precision, diff).clamp_min(0).sqrt()
        sq = (diff**2).sum(-1)
        quad = torch.einsum("nki,kij,nkj->nk", diff, self.covariances, diff)
        return sq / quad.clamp_min(1e-30).sqrt()

    def target(self) -> Tensor:
        """The mass each mode should receive: ``weights`` normalized, or uniform [k]."""
        k = len(self.means)
        w = torch.full((k,), 1.0 / k) if self.weights is None else self.weights.double()
        return (w / w.sum()).double()


def mass_kl(counts: Tensor, target: Tensor) -> float:
    """``KL(p ‖ w) = Σ_j p_j log(p_j / w_j)`` (nats) of the distribution ``p = counts / Σ counts``
    of samples over modes ([k]) from the target mass ``w`` [k]; NaN without any sample."""
    total = float(counts.sum())
    if total == 0:
        return math.nan
    p = counts.double() / total
    nonzero = p > 0
    return float((p[nonzero] * (p[nonzero] / target[nonzero]).log()).sum())


@dataclass(frozen=True)
class ModeReport:
    """``good``: fraction of good samples per level k; ``captured``: modes with at least ``min_count``
    good samples per level; ``missing``: indices of the modes not captured at ``level``; ``mass_kl``:
    KL (nats) of the good samples' spread over modes from the mixture weights, per level;
    ``mass``: that spread [k] at ``level`` (fractions of the good samples)."""

    good: dict[float, float]
    captured: dict[float, int]
    missing: list[int]
    level: float
    n_modes: int
    mass_kl: dict[float, float] = field(default_factory=dict)
    mass: list[float] = field(default_factory=list)

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        """Flat metrics: ``{prefix}good@k`` (percent), ``{prefix}modes@k`` and ``{prefix}kl@k`` (nats)."""
        out = {f"{prefix}good@{k:g}": 100.0 * v for k, v in self.good.items()}
        out.update({f"{prefix}modes@{k:g}": float(v) for k, v in self.captured.items()})
        out.update({f"{prefix}kl@{k:g}": v for k, v in self.mass_kl.items()})
        return out


def mode_report(samples: Tensor, modes: Modes, levels: Sequence[float] = LEVELS, level: float = 3.0, *,
                metric: str = "directional", min_count: int = 1) -> ModeReport:
    """The mode-collapse metric of ``samples`` [n, d] against ``modes`` (Sparse Flows: ~20,000
    samples): per level k the fraction of good samples, the modes captured (at least ``min_count``
    good samples nearest to them; 1 as in VEEGAN) and the spread's KL from the mixture weights;
    ``missing`` lists the modes not captured at ``level`` std, ``mass`` the spread at ``level``."""
    min_count = check_count("min_count", min_count)
    dist = modes.distances(samples, metric)
    nearest, which = dist.min(1)
    k = len(modes.means)
    target = modes.target()
    good, captured, kl = {}, {}, {}
    for lv in sorted({*levels, level}):
        ok = nearest <= lv
        counts = torch.bincount(which[ok], minlength=k)
        good[float(lv)] = ok.float().mean().item()
        captured[float(lv)] = int(counts.ge(min_count).sum())
        kl[float(lv)] = mass_kl(counts, target)
    counts = torch.bincount(which[nearest <= level], minlength=k)
    mass = (counts.double() / max(int(counts.sum()), 1)).tolist()
    return ModeReport(good, captured, [int(j) for j in torch.nonzero(counts < min_count).flatten()], float(level), k,
                      kl, mass)


def mode_table(reports: dict[float, ModeReport]) -> pd.DataFrame:
    """One row per key (e.g. prune ratio): percent good samples, modes captured and mass KL per level."""
    return pd.DataFrame({key: r.as_dict() for key, r in reports.items()}).T
