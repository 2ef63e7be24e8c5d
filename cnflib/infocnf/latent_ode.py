"""InfoCNF's partitioned Latent ODE (Nguyen et al., §4.6 and App. E).

:class:`PartitionedLatentODE` splits the initial latent ``z_0 = (z_y, z_u)`` of a
:class:`~cnflib.models.latent_ode.LatentODE`: the prior of the supervised code ``z_y`` is a
Gaussian whose mean and log-std are a linear function of the labels ``y``, a linear head predicts
``y`` from ``z_y``, and ``z_u ~ N(0, I)``. Train it with :func:`cnflib.models.latent_ode.elbo_loss`;
:func:`train_arm` trains it and its controls (:data:`ARMS`) with one budget.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import Tensor, nn

from cnflib.core.train import cosine_schedule, fit, seed_everything
from cnflib.models.latent_ode import LatentODE, elbo_loss

if TYPE_CHECKING:
    import pandas as pd


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

    @torch.no_grad()
    def direction_accuracy(self, observed: Tensor, labels: Tensor, column: int = -1) -> float:
        """Share of sequences whose head output has the sign of their label: observed [n, W, d], labels [n, k].

        The head reads the posterior mean of ``z_y`` (the encoder's first output); ``column`` picks the
        signed label (the spirals' direction, ±1, is the last of ``(a, b, direction)``).
        """
        predicted = self.predict_labels(self.encoder(observed)[0])[:, column]
        return float((torch.sign(predicted) == torch.sign(labels[:, column])).float().mean())

    def head_loss(self, q_mean: Tensor, y: Optional[Tensor]) -> Tensor:
        """The head's squared error ``mean_n |head(z_y) - y|^2`` on the posterior mean [n, L] (a scalar)."""
        return ((self.predict_labels(q_mean) - y) ** 2).sum(1).mean()


ARMS: tuple[str, ...] = ("baseline", "partitioned", "shuffled", "no_head")
"""The four models of notebook 05: the plain Latent ODE; the partitioned one with the true labels;
the same architecture with the training labels permuted across spirals (no information, same
marginal); and the partitioned one with ``head_weight = 0`` (only the label prior shapes ``z_y``)."""


def arm_labels(kind: str, labels: Tensor, seed: int = 0) -> Tensor:
    """The training labels an arm sees: [n, k] -> [n, k]; "shuffled" permutes the rows (seeded), others keep them."""
    if kind not in ARMS:
        raise ValueError(f"kind must be one of {ARMS}, got {kind!r}")
    if kind != "shuffled":
        return labels
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(10_000 + seed))]


def train_arm(kind: str, observed: Tensor, labels: Tensor, t_observed: Tensor, *, steps: int,
              batch_size: int = 100, lr: float = 1e-2, lr_final: float = 0.05, head_weight: float = 100.0,
              max_grad_norm: Optional[float] = 10.0, latent_dim: int = 5, code_dim: int = 3, cell: str = "gru",
              seed: int = 0,
              evaluate=None, eval_every: int = 0, progress: bool = True, **trainer) -> tuple[LatentODE, "pd.DataFrame"]:
    """Build and train one arm of :data:`ARMS` on observations [n, W, d] and labels [n, k] at times t_observed [W].

    Every arm starts from the same initialization seed (the shared encoder, dynamics and decoder
    weights are identical), sees the same minibatches and takes ``steps`` Adam steps with the
    learning rate decayed by :func:`cosine_schedule` and gradients clipped at ``max_grad_norm``.
    ``cell`` is the encoder's RNN ("gru" by default: on the shared-placement spirals an Elman RNN's
    reconstruction error was 4x a GRU's at 300 steps). ``head_weight`` multiplies the head's squared
    error (summed over the labels) against a negative ELBO summed over every observed coordinate
    (``W * d`` terms): at 10 the head of a 50-step window learnt nothing (its error stayed at the
    labels' variance), at 100 it reads the direction. Returns ``(model, history)`` from :func:`cnflib.core.train.fit`.
    """
    seed_everything(seed)
    if kind == "baseline":
        model: LatentODE = LatentODE(latent_dim=latent_dim, cell=cell)
    else:
        model = PartitionedLatentODE(label_dim=labels.shape[1], code_dim=code_dim, latent_dim=latent_dim, cell=cell)
    weight = 0.0 if kind == "no_head" else head_weight
    history = fit(model, (observed, arm_labels(kind, labels, seed)), steps=steps,
                  loss=elbo_loss(t_observed, head_weight=weight), batch_size=batch_size, lr=lr,
                  lr_schedule=cosine_schedule(steps, lr_final), max_grad_norm=max_grad_norm, seed=seed,
                  evaluate=evaluate, eval_every=eval_every, progress=progress, desc=kind, **trainer)
    return model, history
