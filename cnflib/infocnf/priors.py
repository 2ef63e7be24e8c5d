"""Conditional CNFs: the CCNF baseline and InfoCNF (Nguyen et al., §3.1).

Both push an image through a flow to a latent ``z`` [n, D] and put a label-dependent Gaussian
prior on (part of) it:

* CCNF: ``p(z | y) = N(z; mu(y), sigma(y)^2)`` on the whole latent, ``(mu, log sigma)`` from a
  linear net of the one-hot label, and a linear auxiliary classifier ``q(y | z)``;
* InfoCNF: ``z = [z_y, z_u]`` with ``z_y`` the first ``d_y`` coordinates (half by default):
  ``p(z | y) = N(z_y; mu(y), sigma(y)^2) N(z_u; 0, I)``, and the classifier (dropout 0.5, then
  linear) reads only ``z_y``. It has fewer parameters for the same flow.

The conditional log-density is ``log p(x | y) = log p(z | y) + delta_logp``; the marginal one
``log p(x) = logsumexp_y [log p(x | y) + log p(y)]`` with a uniform ``p(y)``.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnflib.core.distributions import diagonal_gaussian_log_prob, standard_normal_log_prob


class ConditionalPrior(nn.Module):
    """Label-conditioned Gaussian prior and auxiliary classifier on a latent z [n, D]: a base
    distribution (:mod:`cnflib.core.distributions`) whose context is the label.

    Arguments:
        dim: D, the latent dimension.
        n_classes: K.
        cond_dim: d_y, the conditioned and classified part ``z[:, :d_y]``; ``None`` = all of z (CCNF).
        dropout: before the linear classifier (InfoCNF: 0.5).
    """

    def __init__(self, dim: int, n_classes: int, cond_dim: Optional[int] = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.dim, self.n_classes = dim, n_classes
        self.cond_dim = dim if cond_dim is None else int(cond_dim)
        if not 0 < self.cond_dim <= dim:
            raise ValueError(f"cond_dim must be in 1..{dim}, got {cond_dim}")
        self.prior = nn.Linear(n_classes, 2 * self.cond_dim)  # one-hot y -> (mean, log_std)
        nn.init.zeros_(self.prior.weight)
        nn.init.zeros_(self.prior.bias)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.cond_dim, n_classes))

    def prior_params(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-std of ``z_y`` given labels y [n]: two [n, d_y]."""
        mean, log_std = self.prior(F.one_hot(y, self.n_classes).to(self.prior.weight.dtype)).chunk(2, 1)
        return mean, log_std

    def log_prob(self, z: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """log p(z | y), or the marginal log p(z) (:meth:`marginal_log_prob`) when ``y`` is None.
        z: [n, D], y: [n] -> [n]."""
        if y is None:
            return self.marginal_log_prob(z)
        mean, log_std = self.prior_params(y)
        logp = diagonal_gaussian_log_prob(z[:, : self.cond_dim], mean, log_std)
        if self.cond_dim < self.dim:
            logp = logp + standard_normal_log_prob(z[:, self.cond_dim:])
        return logp

    def class_log_probs(self, z: Tensor) -> Tensor:
        """log p(z | y = k) for every class: z [n, D] -> [n, K]."""
        n = z.shape[0]
        labels = torch.arange(self.n_classes, device=z.device).repeat_interleave(n)
        return self.log_prob(z.repeat(self.n_classes, 1), labels).reshape(self.n_classes, n).T

    def marginal_log_prob(self, z: Tensor) -> Tensor:
        """log p(z) = logsumexp_k log p(z | k) - log K (uniform labels). z: [n, D] -> [n]."""
        return torch.logsumexp(self.class_log_probs(z), 1) - math.log(self.n_classes)

    def logits(self, z: Tensor) -> Tensor:
        """Auxiliary classifier q(y | z): z [n, D] -> logits [n, K]."""
        return self.classifier(z[:, : self.cond_dim])

    def sample(self, n: int, y: Optional[Tensor] = None, generator: Optional[torch.Generator] = None,
               temperature: float = 1.0) -> Tensor:
        """Latents z [n, D] drawn from p(z | y) for labels y [n] (uniform random labels if None;
        ``temperature`` scales the noise)."""
        if y is None:
            y = torch.randint(self.n_classes, (n,), generator=generator).to(self.prior.weight.device)
        if len(y) != n:
            raise ValueError(f"sample: {n} samples asked for with {len(y)} labels")
        mean, log_std = self.prior_params(y)
        eps = torch.randn(n, self.dim, generator=generator).to(mean) * temperature
        z_y = mean + log_std.exp() * eps[:, : self.cond_dim]
        return torch.cat([z_y, eps[:, self.cond_dim:]], 1)


def ccnf_prior(dim: int, n_classes: int) -> ConditionalPrior:
    """The CCNF baseline's prior: the whole latent conditioned, linear classifier, no dropout."""
    return ConditionalPrior(dim, n_classes, None, dropout=0.0)


def infocnf_prior(dim: int, n_classes: int, cond_dim: Optional[int] = None, dropout: float = 0.5) -> ConditionalPrior:
    """InfoCNF's prior: ``z_y`` = the first ``cond_dim`` (default D/2) coordinates, dropout-0.5 classifier."""
    return ConditionalPrior(dim, n_classes, dim // 2 if cond_dim is None else cond_dim, dropout=dropout)


def parameter_count(module: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
