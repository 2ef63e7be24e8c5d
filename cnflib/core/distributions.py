"""Gaussian densities and base distributions of flows.

A flow maps data ``x`` to a latent ``z`` with log-determinant ``delta_logp``; its density is
``log p(x) = log p_base(z) + delta_logp`` (the change of variables, FFJORD Eq. 1). The base
distribution is an argument of every flow (as in zuko): :class:`StandardNormal` by default, a
label-conditioned Gaussian for CCNF and InfoCNF (:mod:`cnflib.infocnf.priors`). A base
distribution is an ``nn.Module`` with ``log_prob(z, context=None) -> [n]`` and
``sample(n, context=None, generator=None) -> [n, *event_shape]``.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Union

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over all but the batch dimension. z: [n, ...] -> [n]."""
    flat = z.reshape(z.shape[0], -1)
    return -0.5 * (flat**2).sum(1) - 0.5 * flat.shape[1] * LOG_2PI


def diagonal_gaussian_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z; mean, diag(exp(log_std))^2) summed over all but the batch dimension. All [n, ...] -> [n]."""
    log_p = -0.5 * ((z - mean) * torch.exp(-log_std)) ** 2 - log_std - 0.5 * LOG_2PI
    return log_p.reshape(z.shape[0], -1).sum(1)


def gaussian_kl(q_mean: Tensor, q_std: Tensor, p_mean: Tensor, p_std: Tensor) -> Tensor:
    """KL(N(q_mean, q_std^2) || N(p_mean, p_std^2)) summed over the last dimension: [n, L] -> [n]."""
    var_ratio = (q_std / p_std) ** 2
    return 0.5 * (var_ratio + ((q_mean - p_mean) / p_std) ** 2 - 1.0 - torch.log(var_ratio)).sum(-1)


def gaussian_log_likelihood(x: Tensor, mean: Tensor, std: float) -> Tensor:
    """log N(x | mean, std^2) summed over all but the first dimension: [n, ...] -> [n]."""
    log_p = -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)
    return log_p.flatten(1).sum(1)


class StandardNormal(nn.Module):
    """N(0, I) on events of shape ``event_shape`` (an int D or a tuple); ignores any context.

    It holds no parameters but a zero-size buffer, so that ``.to(device)`` moves its samples too.
    """

    def __init__(self, event_shape: Union[int, Sequence[int]]) -> None:
        super().__init__()
        self.event_shape = (event_shape,) if isinstance(event_shape, int) else tuple(event_shape)
        self.register_buffer("_device", torch.zeros(0), persistent=False)

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """z: [n, ...] -> [n]."""
        return standard_normal_log_prob(z)

    def sample(self, n: int, context: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
               temperature: float = 1.0) -> Tensor:
        """n draws: [n, *event_shape], scaled by ``temperature``."""
        z = torch.randn(n, *self.event_shape, generator=generator) * temperature
        return z.to(self._device.device)
