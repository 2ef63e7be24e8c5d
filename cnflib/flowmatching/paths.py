"""Probability paths of conditional flow matching and their closed forms for Gaussian end points.

Conventions of :class:`cnflib.core.CNF`: data ``x0`` at ``t = 0``, the base (Gaussian) sample ``x1``
at ``t = T``. With ``s = t / T``, the Gaussian conditional path of I-CFM / OT-CFM (Tong et al. 2024's
I-CFM, ``sigma`` constant; rectified flow, Liu et al. 2023, at ``sigma = 0``) is

    x_t = (1 - s) x0 + s x1 + sigma * eps,    eps ~ N(0, I),
    u_t(x_t | x0, x1) = (x1 - x0) / T,

a straight line at constant speed. Lipman et al. (2023)'s conditional OT path
``mu_t = t x1, sigma_t = 1 - (1 - sigma_min) t`` from a Gaussian ``x0`` is the same line at
``sigma = 0`` up to ``sigma_min``. The *marginal* velocity the network learns is the conditional
one averaged over the pairs that pass through ``x``: ``u_t(x) = E[u_t(x_t | x0, x1) | x_t = x]``
(Lipman et al. 2023, Eq. 8 and Theorem 1).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor


def _column(t: Tensor, like: Tensor) -> Tensor:
    """t as [n, 1, ...] broadcastable against ``like`` [n, ...]."""
    t = torch.as_tensor(t).to(like)
    return t.reshape(-1, *([1] * (like.dim() - 1))) if t.numel() > 1 else t.reshape([1] * like.dim())


def conditional_path(x0: Tensor, x1: Tensor, t: Tensor, sigma: float = 0.0, T: float = 1.0,
                     noise: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """A point on each pair's path and its conditional velocity (module docstring).

    x0, x1: [n, ...]; t: [n] or [] in [0, T]; noise: [n, ...] (drawn if ``sigma > 0`` and not given)
    -> (x_t [n, ...], u_t [n, ...]).
    """
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape; got {tuple(x0.shape)} and {tuple(x1.shape)}")
    s = _column(t, x0) / T
    xt = (1 - s) * x0 + s * x1
    if sigma > 0:
        xt = xt + sigma * (torch.randn_like(x0) if noise is None else noise)
    return xt, (x1 - x0) / T


def gaussian_marginal(t: float, mean0: Tensor, std0: float, mean1: Tensor, std1: float,
                      sigma: float = 0.0, T: float = 1.0) -> tuple[Tensor, float]:
    """Mean [D] and per-dimension std of ``x_t`` when ``x0 ~ N(mean0, std0^2 I)`` and
    ``x1 ~ N(mean1, std1^2 I)`` are drawn independently: ``var_t = (1-s)^2 std0^2 + s^2 std1^2 + sigma^2``."""
    s = t / T
    var = (1 - s) ** 2 * std0**2 + s**2 * std1**2 + sigma**2
    return (1 - s) * mean0 + s * mean1, var**0.5


def gaussian_marginal_velocity(t: float, x: Tensor, mean0: Tensor, std0: float, mean1: Tensor, std1: float,
                               sigma: float = 0.0, T: float = 1.0) -> Tensor:
    """The marginal velocity ``E[(x1 - x0) / T | x_t = x]`` of the independent coupling of two isotropic
    Gaussians, in closed form (Gaussian conditioning):

        u_t(x) = (mean1 - mean0) / T + (s std1^2 - (1 - s) std0^2) / (T var_t) * (x - mu_t).

    x: [n, D] -> [n, D]. It transports the marginals (continuity equation:
    ``d var_t / dt = 2 var_t * slope``), and at ``std0 = std1`` and ``sigma = 0`` it is not constant:
    independent pairs cross, so the marginal paths bend (the OT coupling's field is the constant
    ``(mean1 - mean0) / T``).
    """
    s = t / T
    mean, std = gaussian_marginal(t, mean0, std0, mean1, std1, sigma, T)
    slope = (s * std1**2 - (1 - s) * std0**2) / (T * std**2)
    return (mean1 - mean0) / T + slope * (x - mean)
