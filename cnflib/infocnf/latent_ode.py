"""InfoCNF's partitioned Latent ODE (Nguyen et al., §4.6 and App. E).

:class:`PartitionedLatentODE` splits the initial latent ``z_0 = (z_y, z_u)`` of a
:class:`~cnflib.models.latent_ode.LatentODE`: the prior of the supervised code ``z_y`` is a
Gaussian whose mean and log-std are a linear function of the labels ``y``, a linear head predicts
``y`` from ``z_y``, and ``z_u ~ N(0, I)``. Train it with :func:`cnflib.models.latent_ode.elbo_loss`.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn

from cnflib.models.latent_ode import LatentODE


class PartitionedLatentODE(LatentODE):
    """InfoCNF's partitioned Latent ODE: ``z_0 = (z_y, z_u)``, the first ``code_dim`` dims supervised.

    ``p(z_y | y) = N(mu(y), sigma(y)^2)`` with ``(mu, log sigma)`` a linear function of the labels
    ``y`` [n, label_dim]; ``p(z_u) = N(0, I)``; a linear head predicts ``y`` from ``z_y``.
    """

    def __init__(self, label_dim: int = 3, code_dim: int = 3, latent_dim: int = 5, **kwargs) -> None:
        super().__init__(latent_dim=latent_dim, **kwargs)
        if not 0 < code_dim <= latent_dim:
            raise ValueError(f"code_dim must lie in 1..latent_dim={latent_dim}, got {code_dim}")
        self.code_dim = code_dim
        self.label_prior = nn.Linear(label_dim, 2 * code_dim)
        self.head = nn.Linear(code_dim, label_dim)

    def prior(self, y: Optional[Tensor], n: int) -> tuple[Tensor, Tensor]:
        """(mean [n, L], std [n, L]): the labelled prior on ``z_y`` and N(0, I) on ``z_u``."""
        if y is None:
            raise ValueError("the partitioned model's prior needs the labels y")
        mean, std = super().prior(None, n)
        code_mean, code_log_std = self.label_prior(y).chunk(2, dim=-1)
        return (torch.cat([code_mean, mean[:, self.code_dim:]], 1),
                torch.cat([code_log_std.exp(), std[:, self.code_dim:]], 1))

    def predict_labels(self, z0: Tensor) -> Tensor:
        """The linear head: z0 [n, L] -> predicted labels [n, label_dim] (from ``z_y`` only)."""
        return self.head(z0[:, :self.code_dim])

    def head_loss(self, z0: Tensor, y: Optional[Tensor]) -> Tensor:
        """The head's squared error ``mean_n |head(z_y) - y|^2`` (a scalar)."""
        return ((self.predict_labels(z0) - y) ** 2).sum(1).mean()
