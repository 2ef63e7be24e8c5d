"""Transforms between discrete images and a flow's continuous space, and their log-determinants.

Images are kept as integer levels; a flow sees them through :func:`dequantize` (uniform noise,
scaled into [0, 1)) and usually :func:`logit_transform` (CNFs), or :func:`dequantize_centred` (Glow).
Likelihoods of discrete images are reported in bits per dimension with :func:`bits_per_dim`, which
accounts for the scaling, so that the figure is that of the discrete data (Theis et al. 2016; FFJORD
and Glow report it so). :func:`squeeze` is the space-to-depth permutation of RealNVP (Dinh et al.
2017, Fig. 3) used by the multiscale CNF and Glow.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import Tensor


def dequantize(x: Tensor, levels: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform dequantization: integer levels x [...] -> ``(x + u) / levels`` in [0, 1), u ~ U[0, 1)."""
    noise = torch.rand(x.shape, generator=generator).to(x.device)
    return (x.float() + noise) / levels


def dequantize_centred(x: Tensor, levels: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Glow's input scaling: integer levels x [...] -> ``(x + u) / levels - 1/2`` in [-1/2, 1/2), u ~ U[0, 1).

    :func:`dequantize` shifted to be centred at zero (Kingma & Dhariwal 2018, whose code feeds
    ``x / levels - 0.5`` plus uniform noise to the flow); the shift has unit Jacobian, so
    :func:`bits_per_dim` applies unchanged.
    """
    return dequantize(x, levels, generator) - 0.5


def logit_transform(x: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    """``y = logit(alpha + (1 - 2 alpha) x)`` for x [n, ...] in [0, 1], and log|dy/dx| summed per sample [n].

    ``alpha`` keeps the logit away from 0 and 1 (RealNVP uses 0.05, FFJORD 1e-6).
    """
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    log_det = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)
    return y, log_det.flatten(1).sum(1)


def inverse_logit_transform(y: Tensor, alpha: float = 0.05) -> Tensor:
    """The inverse of :func:`logit_transform`, clamped to [0, 1]: y [n, ...] -> x [n, ...]."""
    return ((torch.sigmoid(y) - alpha) / (1 - 2 * alpha)).clamp(0, 1)


def bits_per_dim(nll_nats: Tensor, dims: int, levels: int) -> Tensor:
    """Bits per dimension of the discrete images, from the NLL [n] in nats of their ``[0, 1)`` scaling.

    Scaling levels into [0, 1) divides by ``levels`` per dimension, so the discrete NLL is
    ``nll + dims * log(levels)``.
    """
    return (nll_nats + dims * math.log(levels)) / (dims * math.log(2))


def squeeze(x: Tensor) -> Tensor:
    """Space-to-depth: [n, C, H, W] -> [n, 4C, H/2, W/2] (a permutation: log-det 0)."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return x.reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: Tensor) -> Tensor:
    """Depth-to-space, the inverse of :func:`squeeze`: [n, 4C, H, W] -> [n, C, 2H, 2W]."""
    n, c4, h, w = x.shape
    c = c4 // 4
    x = x.reshape(n, c, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, c, 2 * h, 2 * w)
