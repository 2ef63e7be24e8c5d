"""Gating networks that learn the error tolerances of adaptive ODE solves (InfoCNF, Nguyen et al., §3.2).

Block ``k`` of a flow has a gate: a small net mapping the block's input ``h_k`` to the mean and
log-scale of a Gaussian policy over the natural log of the tolerance. The per-sample outputs are
averaged over the batch (torchdyn takes one step size for the whole batch, so a solve has one
tolerance), an action ``a_k ~ N(mu_k, sigma_k^2)`` is drawn, and the block is solved with
``atol = rtol = clamp(exp(a_k), 1e-8, 1e-1)``. In evaluation mode the mean is used.

The gates are trained by REINFORCE (Williams 1992) in the cumulative-future-reward form of the
paper's Eqs. 5-6 (as in SkipNet, Wang et al. 2018): block ``k`` gets the immediate reward
``r_k = -(eta / K) * NFE_k`` and the last block also ``-L`` (the flow's loss); the return is
``R_k = sum_{j >= k} gamma^(j - k) r_j`` and the surrogate loss is
``-sum_k (R_k - b_k) log pi(a_k | h_k)`` with a running-mean baseline ``b_k``. The original code
uses eta = 0.1, gamma = 0.99 and adds the surrogate with weight 0.01 to the flow's loss.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from cnflib.core.cnf import CNF
from cnflib.core.flow import FlowOutput

TOL_MIN, TOL_MAX = 1e-8, 1e-1
LOG_STD_MIN, LOG_STD_MAX = -4.0, 1.0
TOL_GRID = 40  # sampled tolerances are rounded to 1/40 decade: the CNF caches one solver per tolerance


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """Cumulative future rewards ``R_k = sum_{j >= k} gamma^(j-k) r_j``. rewards: [K] -> [K]."""
    out, running = torch.empty_like(rewards), rewards.new_zeros(())
    for k in reversed(range(len(rewards))):
        running = rewards[k] + gamma * running
        out[k] = running
    return out


def reinforce_surrogate(log_probs: Tensor, returns: Tensor, baseline: Optional[Tensor] = None) -> Tensor:
    """REINFORCE surrogate loss ``-sum_k (R_k - b_k) log pi_k``, whose gradient is the negative
    policy-gradient estimate. log_probs, returns, baseline: [K] -> []."""
    advantage = returns if baseline is None else returns - baseline
    return -(advantage.detach() * log_probs).sum()


class _GateHead(nn.Module):
    """Maps features [n, h] to (mean, log_std) of the log tolerance, each [n]; starts at the
    geometric middle of ``[low, high]`` with standard deviation ``init_std`` (in log units).

    ``gain`` multiplies the pre-activation of the mean: under Adam it acts as a ``gain``-times
    larger learning rate for the mean (``cnflib.core.train.fit`` has one learning rate for all).
    """

    def __init__(self, width: int, low: float, high: float, init_std: float, gain: float = 1.0) -> None:
        super().__init__()
        self.gain = float(gain)
        if not TOL_MIN <= low < high <= TOL_MAX:
            raise ValueError(f"the tolerance range [{low}, {high}] must lie within [{TOL_MIN}, {TOL_MAX}]")
        self.log_low, self.log_high = math.log(low), math.log(high)
        self.out = nn.Linear(width, 2)
        nn.init.zeros_(self.out.weight)
        nn.init.constant_(self.out.bias[1:], math.log(init_std))
        nn.init.zeros_(self.out.bias[:1])

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        a, s = self.out(features).unbind(1)
        mean = self.log_low + (self.log_high - self.log_low) * torch.sigmoid(self.gain * a)
        return mean, s.clamp(LOG_STD_MIN, LOG_STD_MAX)


class MLPGate(nn.Module):
    """Gate for vector data: h [n, d] -> (mean [n], log_std [n]) of the log tolerance."""

    def __init__(self, dim: int, hidden: int = 16, low: float = 1e-5, high: float = 1e-4, init_std: float = 0.5,
                 gain: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.head = _GateHead(hidden, low, high, init_std, gain)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(h.flatten(1)))


class ConvGate(nn.Module):
    """Gate for images (the original code's small conv net): h [n, C, H, W] -> (mean [n], log_std [n])."""

    def __init__(self, channels: int, hidden: int = 8, low: float = 1e-5, high: float = 1e-4, init_std: float = 0.5,
                 gain: float = 1.0) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _GateHead(hidden, low, high, init_std, gain)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(h))


class ToleranceGates(nn.Module):
    """One gate per ODE solve; call it as a block solver: ``gates(k, block, h) -> FlowOutput``
    (see :meth:`cnflib.models.image_cnf.MultiscaleCNF.forward`).

    Each call records the solve's sampled tolerance, its policy log-probability and its forward
    NFE; :meth:`reinforce_loss` turns the records of one forward pass into the REINFORCE
    surrogate and clears them. With ``enabled = False`` every block is solved at its own settings
    and nothing is recorded (the flow is unchanged).

    Arguments:
        gates: one gate module per block, ``gate(h) -> (mean [n], log_std [n])``.
        cost: eta, the weight of the NFE cost, spread as ``eta / K`` over the K blocks.
        gamma: discount of future rewards.
        baseline_momentum: of the running-mean baseline of each block's return.
    """

    def __init__(self, gates: Sequence[nn.Module], cost: float = 0.1, gamma: float = 0.99,
                 baseline_momentum: float = 0.9) -> None:
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.cost, self.gamma, self.momentum = cost, gamma, baseline_momentum
        self.enabled = True
        self.register_buffer("baseline", torch.zeros(len(self.gates)))
        self.register_buffer("baseline_ready", torch.zeros((), dtype=torch.bool))
        self.log_probs: dict[int, Tensor] = {}
        self.tolerances: dict[int, float] = {}
        self.nfe: dict[int, int] = {}
        self.sample_tolerances: dict[int, Tensor] = {}  # per-sample exp(mean) of the latest call [n]

    def policy(self, k: int, h: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Gate ``k``'s batch policy on input h [n, ...]: (mu [], sigma [], per-sample mean [n])."""
        mean, log_std = self.gates[k](h.detach())
        return mean.mean(), log_std.mean().exp(), mean

    def forward(self, k: int, block: CNF, h: Tensor) -> FlowOutput:
        if not self.enabled:
            return block(h)
        mu, sigma, per_sample = self.policy(k, h)
        action = (mu + sigma * torch.randn_like(mu)).detach() if self.training else mu.detach()
        self.log_probs[k] = torch.distributions.Normal(mu, sigma).log_prob(action)
        log_tol = min(max(float(action), math.log(TOL_MIN)), math.log(TOL_MAX))
        tol = 10 ** (round(log_tol / math.log(10) * TOL_GRID) / TOL_GRID)
        self.tolerances[k] = tol
        self.sample_tolerances[k] = per_sample.detach().exp().clamp(TOL_MIN, TOL_MAX)
        with block.solver_options(atol=tol, rtol=tol):
            out = block(h)
        self.nfe[k] = block.nfe_forward
        return out

    def reinforce_loss(self, loss: Tensor) -> Tensor:
        """The REINFORCE surrogate of the latest forward pass, given the flow's loss (a scalar,
        detached here); updates the baselines and clears the records. Returns a scalar (0 when
        the gates are disabled or nothing was recorded)."""
        if not self.enabled or not self.log_probs:
            return loss.new_zeros(())
        ks = sorted(self.log_probs)
        rewards = torch.tensor([-self.cost / len(self.gates) * self.nfe[k] for k in ks], dtype=loss.dtype, device=loss.device)
        rewards[-1] = rewards[-1] - loss.detach()
        returns = discounted_returns(rewards, self.gamma)
        index = torch.tensor(ks, device=loss.device)
        if not bool(self.baseline_ready):  # first call: the baseline starts at the first returns
            self.baseline[index] = returns
            self.baseline_ready.fill_(True)
        baseline = self.baseline[index].clone()
        surrogate = reinforce_surrogate(torch.stack([self.log_probs[k] for k in ks]), returns, baseline)
        if self.training:
            self.baseline[index] = self.momentum * baseline + (1 - self.momentum) * returns
        self.log_probs.clear()
        return surrogate


def image_gates(block_shapes: Sequence[Sequence[int]], **options) -> ToleranceGates:
    """:class:`ToleranceGates` with a :class:`ConvGate` per image block of shape ``(C, H, W)``.
    ``options``: ``hidden``, ``low``, ``high``, ``init_std``, ``gain`` of the gates, then ``cost``,
    ``gamma``, ``baseline_momentum`` of :class:`ToleranceGates`."""
    gate_keys = {"hidden", "low", "high", "init_std", "gain"}
    gate_options = {k: v for k, v in options.items() if k in gate_keys}
    rest = {k: v for k, v in options.items() if k not in gate_keys}
    return ToleranceGates([ConvGate(shape[0], **gate_options) for shape in block_shapes], **rest)
