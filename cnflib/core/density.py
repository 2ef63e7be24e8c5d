"""Density checks and baselines: Riemann sums of a density, a Gaussian fit, trace-estimator variance."""
from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor


@torch.no_grad()
def grid_mass(log_prob: Callable[[Tensor], Tensor], bounds: tuple[float, float], n: int, dim: int,
              chunk: int = 4096) -> float:
    """Riemann sum of ``exp(log_prob)`` over the cube ``bounds^dim`` with ``n`` points per axis.

    A normalized density whose mass lies inside the cube gives 1 up to the quadrature error.
    """
    axis = torch.linspace(bounds[0], bounds[1], n)
    points = axis[:, None] if dim == 1 else torch.cartesian_prod(*[axis] * dim)
    cell = float(axis[1] - axis[0]) ** dim
    return sum(log_prob(p).exp().sum().item() for p in points.split(chunk)) * cell


@torch.no_grad()
def mean_nll(model, x: Tensor, batch_size: Optional[int] = None, **solver) -> tuple[float, float]:
    """Mean NLL (nats) of ``x`` [n, ...] under a flow and the forward NFE per solve, with temporary
    solver settings (e.g. ``atol=1e-5, rtol=1e-5`` or ``solver="rk4", steps=4``).

    ``x`` is moved to the model's device and, if ``batch_size`` is given, solved in chunks of that
    many points (the NFE is then the mean over chunks).
    """
    x = x.to(next(model.parameters()).device)
    chunks = x.split(batch_size or len(x))
    total, nfe = 0.0, 0
    with model.solver_options(**solver):
        for chunk in chunks:
            total -= model.log_prob(chunk).sum().item()
            nfe += model.nfe_forward
    return total / len(x), nfe / len(chunks)


def nll_evaluator(x: Tensor, batch_size: Optional[int] = None, **solver) -> Callable[..., dict[str, float]]:
    """An ``evaluate(model)`` for :func:`cnflib.core.train.fit`: ``{"nll", "nfe"}`` of ``x`` by
    :func:`mean_nll` at the given (evaluation) solver settings, e.g. ``atol=1e-5, rtol=1e-5``."""

    def evaluate(model) -> dict[str, float]:
        nll, nfe = mean_nll(model, x, batch_size, **solver)
        return {"nll": nll, "nfe": nfe}

    return evaluate


def gaussian_fit_log_prob(train: Tensor) -> Callable[[Tensor], Tensor]:
    """The maximum-likelihood Gaussian of ``train`` [n, d], as a log-density function [m, d] -> [m]."""
    mean = train.mean(0)
    cov = torch.cov(train.T).reshape(train.shape[1], train.shape[1])
    dist = torch.distributions.MultivariateNormal(mean, covariance_matrix=cov)
    return dist.log_prob


def hutchinson_variance(jacobian: Tensor, noise: str) -> Tensor:
    """Closed-form variance of Hutchinson's estimate ``e^T J e`` of tr(J). jacobian: [d, d] -> [].

    Gaussian e: 2 ||S||_F^2 with S = (J + J^T)/2. Rademacher e: 2 (||S||_F^2 - sum_i J_ii^2),
    i.e. the diagonal contributes no variance (Hutchinson 1990; Avron & Toledo 2011).
    """
    sym = 0.5 * (jacobian + jacobian.T)
    if noise == "gaussian":
        return 2 * (sym**2).sum()
    if noise == "rademacher":
        return 2 * ((sym**2).sum() - (torch.diagonal(jacobian) ** 2).sum())
    raise ValueError(f"unknown noise {noise!r}; valid: gaussian, rademacher")


@torch.no_grad()
def sliced_wasserstein(x: Tensor, y: Tensor, n_projections: int = 256,
                       generator: Optional[torch.Generator] = None) -> float:
    """Sliced 2-Wasserstein distance between two equal-size samples. x, y: [n, d] -> float.

    ``SW_2(x, y)^2 = E_theta W_2^2(theta^T x, theta^T y)`` over directions ``theta`` uniform on the
    sphere (Rabin et al. 2011; Bonneel et al. 2015), estimated with ``n_projections`` directions.
    In one dimension ``W_2`` between two equal-size samples pairs them in sorted order, so each
    direction costs a sort. A metric on distributions: 0 only if every projection agrees (a sample
    quality score that needs no density). For a translation ``y = x + m``, ``SW_2^2 = |m|^2 / d``
    in expectation over ``theta``.
    """
    if x.dim() != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must both be [n, d] of the same shape; got {tuple(x.shape)} and {tuple(y.shape)}: "
                         "draw as many samples as reference points")
    theta = torch.randn(x.shape[1], n_projections, generator=generator).to(x)
    theta = theta / theta.norm(dim=0, keepdim=True)
    px, _ = torch.sort(x @ theta, dim=0)
    py, _ = torch.sort(y.to(x) @ theta, dim=0)
    return (px - py).pow(2).mean().sqrt().item()
