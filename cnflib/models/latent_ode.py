"""Latent ODEs (Chen et al. 2018; Rubanova et al. 2019); InfoCNF's partitioned variant (App. E) is
:class:`cnflib.infocnf.latent_ode.PartitionedLatentODE`.

A recognition RNN reads the observations ``x_{0:N}`` backwards in time and outputs
``q(z_0 | x) = N(mu, sigma^2)``; a sample ``z_0`` is evolved by a latent ODE ``dz/dt = f(z)``
(torchdyn) to every observation time, and a decoder maps ``z_t`` to the mean of a Gaussian
observation model ``p(x_t | z_t) = N(dec(z_t), obs_std^2)``. Training maximizes the ELBO

    ELBO = E_q [ sum_t log p(x_t | z_t) ] - KL(q(z_0 | x) || p(z_0)).

A subclass may change the prior (:meth:`LatentODE.prior`) and add a supervised term
(:meth:`LatentODE.head_loss`), which :func:`elbo_loss` adds to the negative ELBO.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Union

import torch
from torch import Tensor, nn

from cnflib.core._validation import check_choice
from cnflib.core.distributions import gaussian_kl, gaussian_log_likelihood
from cnflib.core.vector_fields import TimeConcatMLP, make_activation
from cnflib.core.odes import BudgetedField, neural_ode, solve

RNN_CELLS = {"rnn": nn.RNN, "gru": nn.GRU}
Batch = Union[Tensor, tuple[Tensor, ...]]


@dataclass
class LatentODEOutput:
    """What a forward pass returns. ``n`` series, ``T`` times, latent dimension ``L``.

    Attributes:
        x_mean: decoded means [n, T, obs_dim].
        z: latent path [n, T, L].
        q_mean, q_std: the posterior ``q(z_0 | x)`` [n, L].
    """

    x_mean: Tensor
    z: Tensor
    q_mean: Tensor
    q_std: Tensor


class RecognitionRNN(nn.Module):
    """Encoder: an RNN over the reversed series, then a linear map to ``(mu, log sigma)``.

    x: [n, T, obs_dim] -> (mean [n, latent_dim], std [n, latent_dim]), the posterior at the first time.
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 5, hidden: int = 25, cell: str = "rnn") -> None:
        super().__init__()
        self.rnn = RNN_CELLS[check_choice("cell", cell, RNN_CELLS)](obs_dim, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 2 * latent_dim)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        _, h = self.rnn(torch.flip(x, [1]))  # h: [1, n, hidden], the state after reading x_0 last
        mean, log_std = self.out(h[-1]).chunk(2, dim=-1)
        return mean, log_std.exp()


class LatentODE(nn.Module):
    """A Latent ODE for regularly or irregularly sampled series on a shared time grid.

    Arguments:
        obs_dim: observation dimension (2 for the spirals).
        latent_dim: dimension of ``z`` (InfoCNF App. E: 5).
        rnn_hidden: encoder width (25); ``cell`` is "rnn" (Elman, tanh) or "gru".
        dynamics_hidden, decoder_hidden: widths of the one-hidden-layer dynamics and decoder (20).
        obs_std: std of the Gaussian observation model (the data's noise, 0.3).
        solver, atol, rtol, sensitivity: passed to :func:`cnflib.core.odes.neural_ode`. With a fixed-step
            solver, torchdyn takes one step between consecutive requested times.
        max_nfe: step budget of each solve.
    """

    def __init__(self, obs_dim: int = 2, latent_dim: int = 5, rnn_hidden: int = 25, dynamics_hidden: int = 20,
                 decoder_hidden: int = 20, obs_std: float = 0.3, cell: str = "rnn", activation: str = "elu",
                 solver: str = "rk4", atol: float = 1e-5, rtol: float = 1e-5, sensitivity: str = "autograd",
                 max_nfe: int = 10_000) -> None:
        super().__init__()
        self.latent_dim, self.obs_std = latent_dim, obs_std
        self.encoder = RecognitionRNN(obs_dim, latent_dim, rnn_hidden, cell)
        self.dynamics = BudgetedField(TimeConcatMLP(latent_dim, (dynamics_hidden,), activation, time_dependent=False),
                                      max_nfe)
        self.ode = neural_ode(self.dynamics, solver=solver, atol=atol, rtol=rtol, sensitivity=sensitivity)
        self.decoder = nn.Sequential(nn.Linear(latent_dim, decoder_hidden), make_activation(activation),
                                     nn.Linear(decoder_hidden, obs_dim))

    def prior(self, y: Optional[Tensor], n: int) -> tuple[Tensor, Tensor]:
        """Prior ``p(z_0)``: (mean [n, L], std [n, L]); here N(0, I), whatever the labels."""
        zeros = torch.zeros(n, self.latent_dim, device=self.decoder[0].weight.device)
        return zeros, torch.ones_like(zeros)

    def decode(self, z0: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Evolve ``z0`` [n, L] over times ``t`` [T] and decode: (x_mean [n, T, obs_dim], z [n, T, L])."""
        z = solve(self.ode, self.dynamics, z0, t).transpose(0, 1)
        return self.decoder(z), z

    def forward(self, x: Tensor, t: Tensor, sample: bool = True) -> LatentODEOutput:
        """Encode x [n, T_obs, obs_dim], draw ``z_0`` (or take the posterior mean) and decode at times t [T]."""
        q_mean, q_std = self.encoder(x)
        z0 = q_mean + q_std * torch.randn_like(q_std) if sample else q_mean
        x_mean, z = self.decode(z0, t)
        return LatentODEOutput(x_mean, z, q_mean, q_std)

    def elbo_terms(self, x: Tensor, t: Tensor, y: Optional[Tensor] = None) -> dict[str, Tensor]:
        """Per-series ELBO terms on observations x [n, T, obs_dim] at times t [T].

        Returns ``log_lik`` [n], ``kl`` [n] and the posterior mean ``q_mean`` [n, L] (for :meth:`head_loss`).
        """
        out = self(x, t)
        p_mean, p_std = self.prior(y, x.shape[0])
        return {"log_lik": gaussian_log_likelihood(x, out.x_mean, self.obs_std),
                "kl": gaussian_kl(out.q_mean, out.q_std, p_mean, p_std), "q_mean": out.q_mean}

    def head_loss(self, q_mean: Tensor, y: Optional[Tensor]) -> Optional[Tensor]:
        """A supervised loss on the posterior mean of ``z_0`` [n, L] given labels (a scalar), or ``None``: none here."""
        return None


def elbo_loss(t: Tensor, kl_weight: float = 1.0, head_weight: float = 1.0
              ) -> Callable[[nn.Module, Batch], tuple[Tensor, dict[str, float]]]:
    """A :func:`cnflib.core.train.fit` loss: mean negative ELBO per series (plus the head's loss).

    The batch is ``(x, y)`` with observations x [n, T, obs_dim] at times ``t`` [T] and labels
    y [n, label_dim] (ignored by the plain :class:`LatentODE`). If the model's
    :meth:`~LatentODE.head_loss` of the posterior mean is not ``None`` (the partitioned model's squared error
    ``|head(z_y) - y|^2``), ``head_weight`` times it is added. The head reads the posterior mean, not the sample
    ``z_0``: while ``q(z_y | x)`` is still wide, a sampled ``z_y`` is mostly noise, the head's best
    weights are then zero and pass no gradient to the encoder (measured: the head's error stayed at
    the labels' variance). Metrics: ``neg_elbo``, ``kl`` and ``head_mse``.
    """

    def loss(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        terms = model.elbo_terms(x, t, y)
        neg_elbo = (kl_weight * terms["kl"] - terms["log_lik"]).mean()
        total = neg_elbo
        metrics = {"neg_elbo": neg_elbo.item(), "kl": terms["kl"].mean().item()}
        head_mse = model.head_loss(terms["q_mean"], y)
        if head_mse is not None:
            total = total + head_weight * head_mse
            metrics["head_mse"] = head_mse.item()
        return total, metrics

    return loss


@torch.no_grad()
def trajectory_errors(model: LatentODE, observed: Tensor, t_observed: Tensor, truth: Tensor, t_future: Tensor,
                      future: Tensor, batch_size: int = 500) -> dict[str, Tensor]:
    """Per-series reconstruction and extrapolation MSE from the posterior mean ``z_0``.

    observed, truth: [n, W, d] at times t_observed [W]; future: [n, H, d] at times t_future [H].
    Returns ``{"recon_mse": [n], "extrap_mse": [n]}``: each series' mean squared error per
    coordinate against the noise-free path, on the window and on the held-out horizon.
    """
    t = torch.cat([t_observed, t_future])
    w = len(t_observed)
    recon, extrap = [], []
    for xo, xt, xf in zip(observed.split(batch_size), truth.split(batch_size), future.split(batch_size)):
        x_mean = model(xo, t, sample=False).x_mean
        recon.append(((x_mean[:, :w] - xt) ** 2).flatten(1).mean(1))
        extrap.append(((x_mean[:, w:] - xf) ** 2).flatten(1).mean(1))
    return {"recon_mse": torch.cat(recon), "extrap_mse": torch.cat(extrap)}


@torch.no_grad()
def trajectory_mse(model: LatentODE, observed: Tensor, t_observed: Tensor, truth: Tensor, t_future: Tensor,
                   future: Tensor, batch_size: int = 500) -> dict[str, float]:
    """Reconstruction and extrapolation MSE from the posterior mean ``z_0``, against noise-free paths.

    observed, truth: [n, W, d] at times t_observed [W]; future: [n, H, d] at times t_future [H].
    Returns ``{"recon_mse", "extrap_mse"}`` (mean squared error per coordinate): the means over
    series of :func:`trajectory_errors` (every series has the same number of points).
    """
    errors = trajectory_errors(model, observed, t_observed, truth, t_future, future, batch_size)
    return {k: float(v.mean()) for k, v in errors.items()}
