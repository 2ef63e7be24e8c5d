"""Toy datasets: the 2-D sets of FFJORD and Sparse Flows, and the 1-D mixture of InfoCNF App. C.

Every set is generated on the fly from a ``torch.Generator`` (same generator, same points).
Definitions follow the papers' data scripts (see docs/references.md): FFJORD's
8gaussians, 2spirals, checkerboard, moons, circles, pinwheel, rings and swissroll; a 5x5
``gaussians`` grid (the classic mode-collapse benchmark); Sparse Flows' ``gaussians6``
(6 modes on a circle) and ``gaussians_spiral`` (10 modes along a spiral); and ``mixture1d``.

Mixture-type sets also expose their modes (:func:`modes`) and exact density
(:func:`log_density`), used by the mode-collapse metric and the density checks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch
from torch import Tensor

from cnflib.core._validation import check_choice


@dataclass(frozen=True)
class GaussianMixture:
    """An isotropic Gaussian mixture. ``centers``: [k, d]; ``stds``: [k]; ``weights``: [k] (sum 1)."""

    centers: Tensor
    stds: Tensor
    weights: Tensor

    def sample(self, n: int, generator: Optional[torch.Generator]) -> Tensor:
        """Draw ``n`` points: Tensor[n, d]."""
        component = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.centers.shape[1], generator=generator)
        return self.centers[component] + noise * self.stds[component, None]

    def covariances(self) -> Tensor:
        """Each component's covariance ``σ_j² I``: Tensor[k, d, d]."""
        d = self.centers.shape[1]
        return self.stds[:, None, None] ** 2 * torch.eye(d, dtype=self.centers.dtype)

    def log_density(self, x: Tensor) -> Tensor:
        """Exact log-density of points ``x``: Tensor[n, d] -> Tensor[n] (nats)."""
        d = self.centers.shape[1]
        sq = ((x[:, None, :] - self.centers[None]) ** 2).sum(-1)  # [n, k]
        var = self.stds**2
        log_comp = -0.5 * sq / var - 0.5 * d * torch.log(2 * math.pi * var)
        return torch.logsumexp(log_comp + torch.log(self.weights), dim=1)


def _uniform(n: int, generator: Optional[torch.Generator]) -> Tensor:
    return torch.rand(n, generator=generator)


def _numpy_state(generator: Optional[torch.Generator]) -> np.random.RandomState:
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    return np.random.RandomState(seed)


def _eight_gaussians() -> GaussianMixture:
    angles = torch.arange(8) * (2 * math.pi / 8)
    centers = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], 1) / 1.414
    return GaussianMixture(centers, torch.full((8,), 0.5 / 1.414), torch.full((8,), 1 / 8))


def _grid_gaussians() -> GaussianMixture:
    axis = torch.linspace(-2.0, 2.0, 5)
    centers = torch.cartesian_prod(axis, axis)
    return GaussianMixture(centers, torch.full((25,), 0.15), torch.full((25,), 1 / 25))


def _six_gaussians() -> GaussianMixture:
    angles = torch.arange(6) * (2 * math.pi / 6)
    centers = 4.0 * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    return GaussianMixture(centers, torch.full((6,), 0.5), torch.full((6,), 1 / 6))


def _spiral_gaussians() -> GaussianMixture:
    k = torch.arange(10, dtype=torch.float32)
    angles = k * (2 * math.pi / 6)  # 6 modes per loop
    radius = 4.0 - 3.0 * k / 9  # 4 -> 1
    centers = radius[:, None] * torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    stds = 0.3 - 0.2 * k / 9  # 0.3 -> 0.1
    return GaussianMixture(centers, stds, torch.full((10,), 0.1))


def _mixture_1d() -> GaussianMixture:
    centers = torch.tensor([[-2.0], [0.5], [3.0]])
    return GaussianMixture(centers, torch.tensor([0.5, 0.3, 0.7]), torch.tensor([0.3, 0.4, 0.3]))


_MIXTURES: dict[str, Callable[[], GaussianMixture]] = {
    "8gaussians": _eight_gaussians,
    "gaussians": _grid_gaussians,
    "gaussians6": _six_gaussians,
    "gaussians_spiral": _spiral_gaussians,
    "mixture1d": _mixture_1d,
}


def _two_spirals(n: int, generator: Optional[torch.Generator]) -> Tensor:
    half = n // 2 + n % 2
    turn = torch.sqrt(_uniform(half, generator)) * 540 * (2 * math.pi) / 360
    dx = -torch.cos(turn) * turn + _uniform(half, generator) * 0.5
    dy = torch.sin(turn) * turn + _uniform(half, generator) * 0.5
    arm = torch.stack([dx, dy], 1)
    x = torch.cat([arm, -arm])[:n] / 3
    return x + 0.1 * torch.randn(n, 2, generator=generator)


def _checkerboard(n: int, generator: Optional[torch.Generator]) -> Tensor:
    x1 = _uniform(n, generator) * 4 - 2
    x2 = _uniform(n, generator) - torch.randint(0, 2, (n,), generator=generator).float() * 2
    x2 = x2 + torch.floor(x1) % 2
    return torch.stack([x1, x2], 1) * 2


def _pinwheel(n: int, generator: Optional[torch.Generator]) -> Tensor:
    arms, radial_std, tangential_std, rate = 5, 0.3, 0.1, 0.25
    features = torch.randn(n, 2, generator=generator) * torch.tensor([radial_std, tangential_std])
    features[:, 0] += 1.0
    labels = torch.randint(0, arms, (n,), generator=generator)
    angles = labels * (2 * math.pi / arms) + rate * torch.exp(features[:, 0])
    cos, sin = torch.cos(angles), torch.sin(angles)
    rotated = torch.stack([cos * features[:, 0] - sin * features[:, 1], sin * features[:, 0] + cos * features[:, 1]], 1)
    return 2 * rotated


def _rings(n: int, generator: Optional[torch.Generator]) -> Tensor:
    radii = torch.tensor([1.0, 0.75, 0.5, 0.25])
    ring = torch.randint(0, 4, (n,), generator=generator)
    angle = _uniform(n, generator) * 2 * math.pi
    x = radii[ring, None] * torch.stack([torch.cos(angle), torch.sin(angle)], 1) * 3
    return x + 0.08 * torch.randn(n, 2, generator=generator)


def _circles(n: int, generator: Optional[torch.Generator]) -> Tensor:
    from sklearn.datasets import make_circles

    x, _ = make_circles(n, factor=0.5, noise=0.08, random_state=_numpy_state(generator))
    return torch.as_tensor(x, dtype=torch.float32) * 3


def _moons(n: int, generator: Optional[torch.Generator]) -> Tensor:
    from sklearn.datasets import make_moons

    x, _ = make_moons(n, noise=0.1, random_state=_numpy_state(generator))
    return torch.as_tensor(x, dtype=torch.float32) * 2 + torch.tensor([-1.0, -0.2])


def _swissroll(n: int, generator: Optional[torch.Generator]) -> Tensor:
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=1.0, random_state=_numpy_state(generator))
    return torch.as_tensor(x[:, [0, 2]], dtype=torch.float32) / 5


_GENERATORS: dict[str, Callable[[int, Optional[torch.Generator]], Tensor]] = {
    "2spirals": _two_spirals,
    "checkerboard": _checkerboard,
    "moons": _moons,
    "circles": _circles,
    "pinwheel": _pinwheel,
    "rings": _rings,
    "swissroll": _swissroll,
}

NAMES: tuple[str, ...] = (
    "8gaussians", "2spirals", "checkerboard", "moons", "circles", "pinwheel", "rings",
    "swissroll", "gaussians", "gaussians6", "gaussians_spiral", "mixture1d",
)
MIXTURE_NAMES: tuple[str, ...] = tuple(_MIXTURES)


def sample(name: str, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Draw ``n`` points of toy set ``name``: Tensor[n, d] (d = 1 for mixture1d, else 2)."""
    check_choice("dataset", name, NAMES)
    if name in _MIXTURES:
        return _MIXTURES[name]().sample(n, generator)
    return _GENERATORS[name](n, generator).float()


def mixture(name: str) -> GaussianMixture:
    """The exact Gaussian mixture behind a mixture-type set (see ``MIXTURE_NAMES``)."""
    return _MIXTURES[check_choice("mixture-type dataset", name, MIXTURE_NAMES)]()


def modes(name: str) -> tuple[Tensor, Tensor]:
    """Mode centres and standard deviations of a mixture-type set: (Tensor[k, d], Tensor[k])."""
    m = mixture(name)
    return m.centers.clone(), m.stds.clone()


KNOWN_DENSITY: tuple[str, ...] = (*MIXTURE_NAMES, "checkerboard")  # sets with an exact log_density


def _checkerboard_log_density(x: Tensor) -> Tensor:
    """Checkerboard: uniform on the 8 cells (x1//2 + x2//2 even) of side 2 in [-4, 4)^2, total area 32."""
    u = x / 2
    inside = (u >= -2).all(1) & (u < 2).all(1) & ((torch.floor(u[:, 0]) + torch.floor(u[:, 1])) % 2 == 0)
    return torch.where(inside, torch.full_like(u[:, 0], -math.log(32.0)), torch.full_like(u[:, 0], -math.inf))


def log_density(name: str, x: Tensor) -> Tensor:
    """Exact log-density (nats) of a set of ``KNOWN_DENSITY`` (the mixtures and checkerboard) at
    ``x``: Tensor[n, d] -> Tensor[n] (``-inf`` off a checkerboard's support)."""
    if check_choice("dataset with a known density", name, KNOWN_DENSITY) == "checkerboard":
        return _checkerboard_log_density(x)
    return mixture(name).log_density(x)


def true_nll(name: str, x: Tensor) -> float:
    """Mean NLL (nats) of points ``x`` [n, d] under the true density of ``name``: the floor that a
    model's test NLL on the same points approaches (the entropy, up to sampling error)."""
    return float(-log_density(name, x).mean())


def dim(name: str) -> int:
    """Dimension of the points of toy set ``name``."""
    return 1 if check_choice("dataset", name, NAMES) == "mixture1d" else 2


def splits(name: str, n_train: int, n_test: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A fixed train and test set of ``name`` drawn from independent generators of ``seed``."""
    train = sample(name, n_train, torch.Generator().manual_seed(seed))
    test = sample(name, n_test, torch.Generator().manual_seed(seed + 10_000))
    return train, test
