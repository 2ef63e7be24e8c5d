"""Gating networks that learn the error tolerances of adaptive ODE solves (InfoCNF, Nguyen et al., §3.2).

Block ``k`` of a flow has a gate: a small net on the block's input features ``h_k`` giving the
mean and log-scale of a Gaussian policy over the natural log of the tolerance, per sample. The
per-sample outputs are averaged over the batch (torchdyn takes one step size for the whole batch,
so a solve has one tolerance), so the policy is a function of the batch's features. An action
``a_k ~ N(mu_k, sigma_k^2)`` is drawn (the mean in evaluation mode), clamped to the gate's range
``[low, high]`` and rounded to 1/40 decade; the block is solved at ``atol = rtol = exp(a_k)`` and
the log-probability is taken at that used action.

The gates are trained by REINFORCE (Williams 1992) in the cumulative-future-reward form of the
paper's Eqs. 5-6 (as in SkipNet, Wang et al. 2018): block ``k`` gets the immediate reward
``r_k = -(eta / K) * NFE_k`` and the last block also ``-L`` (the flow's loss); the return is
``R_k = sum_{j >= k} gamma^(j - k) r_j`` and the surrogate loss is
``-sum_k (R_k - b_k) log pi(a_k | h_k)`` with a running-mean baseline ``b_k``. The original code
uses eta = 0.1, gamma = 0.99 and adds the surrogate with weight 0.01 to the flow's loss. The gates
read ``h_k.detach()``, so the surrogate is their only gradient and, under Adam, a constant weight
on it changes nothing: the gates' step size is their own learning rate ``ToleranceGates.own_lr``,
a parameter group of its own in :func:`cnflib.core.train.fit` (:func:`cnflib.core.train.parameter_groups`).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from cnflib.core.cnf import CNF
from cnflib.core.flow import FlowOutput

TOL_MIN, TOL_MAX = 1e-8, 1e-1
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
    """Maps features [n, h] to (mean, log_std) of the log tolerance, each [n]. The mean is
    ``log low + (log high - log low) * sigmoid(w . features + b)`` (the original code's
    ``1e-5 + 9e-5 * sigmoid(.)``, in log space); it starts at the geometric middle of
    ``[low, high]`` (``w = 0``, ``b = 0``) and becomes a function of the input as ``w`` is learned
    (a random ``w`` made the policy drift with the scale of the features as the flow trained). The
    standard deviation is fixed at ``init_std`` (in log units): a learned one grew
    until the actions jumped across the whole range at tutorial size."""

    def __init__(self, width: int, low: float, high: float, init_std: float) -> None:
        super().__init__()
        if not TOL_MIN <= low < high <= TOL_MAX:
            raise ValueError(f"the tolerance range [{low}, {high}] must lie within [{TOL_MIN}, {TOL_MAX}]")
        if not init_std > 0:
            raise ValueError(f"init_std must be positive, got {init_std}")
        self.log_low, self.log_high, self.log_std = math.log(low), math.log(high), math.log(init_std)
        self.out = nn.Linear(width, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        a = self.out(features)[:, 0]
        mean = self.log_low + (self.log_high - self.log_low) * torch.sigmoid(a)
        return mean, torch.full_like(mean, self.log_std)


class MLPGate(nn.Module):
    """Gate for vector data: h [n, d] -> (mean [n], log_std [n]) of the log tolerance."""

    def __init__(self, dim: int, hidden: int = 16, low: float = 1e-5, high: float = 1e-4, init_std: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU())
        self.head = _GateHead(hidden, low, high, init_std)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(h.flatten(1)))


class ConvGate(nn.Module):
    """Gate for images (the original code's small conv net): h [n, C, H, W] -> (mean [n], log_std [n])."""

    def __init__(self, channels: int, hidden: int = 8, low: float = 1e-5, high: float = 1e-4, init_std: float = 0.5) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head = _GateHead(hidden, low, high, init_std)

    def forward(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return self.head(self.body(h))


class ToleranceGates(nn.Module):
    """One gate per ODE solve; call it as a block solver: ``gates(k, block, h) -> FlowOutput``
    (see :meth:`cnflib.models.image_cnf.MultiscaleCNF.forward`).

    Each call records the solve's tolerance, the policy's log-probability at it and the forward
    NFE; :meth:`reinforce_loss` turns the records of one forward pass into the REINFORCE
    surrogate and clears them. With ``enabled = False`` every block is solved at its own settings
    and nothing is recorded (the flow is unchanged).

    Arguments:
        gates: one gate module per block, ``gate(h) -> (mean [n], log_std [n])``, with a
            ``head`` holding its range (``log_low``, ``log_high``).
        eta: the weight of the NFE cost in the reward, spread as ``eta / K`` over the K blocks.
        gamma: discount of future rewards.
        baseline_momentum: of the running-mean baseline of each block's return.
        lr: the gates' own learning rate (``own_lr``: their parameter group in
            :func:`cnflib.core.train.fit`).
    """

    def __init__(self, gates: Sequence[nn.Module], eta: float = 0.1, gamma: float = 0.99,
                 baseline_momentum: float = 0.5, lr: float = 5e-2) -> None:
        super().__init__()
        self.gates = nn.ModuleList(gates)
        self.eta, self.gamma, self.momentum, self.own_lr = float(eta), gamma, baseline_momentum, float(lr)
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

    def action(self, k: int, mu: Tensor, sigma: Tensor) -> float:
        """The log tolerance gate ``k`` uses: a draw from ``N(mu, sigma^2)`` (training) or ``mu``
        (evaluation), clamped to the gate's range and rounded to 1/``TOL_GRID`` decade."""
        head = self.gates[k].head
        mu, sigma = mu.detach(), sigma.detach()
        raw = float(mu + sigma * torch.randn_like(mu)) if self.training else float(mu)
        log_tol = min(max(raw, head.log_low), head.log_high)
        rounded = round(log_tol / math.log(10) * TOL_GRID) / TOL_GRID * math.log(10)
        return min(max(rounded, head.log_low), head.log_high)

    def forward(self, k: int, block: CNF, h: Tensor) -> FlowOutput:
        if not self.enabled:
            return block(h)
        mu, sigma, per_sample = self.policy(k, h)
        log_tol = self.action(k, mu, sigma)
        self.log_probs[k] = torch.distributions.Normal(mu, sigma).log_prob(mu.new_tensor(log_tol))
        tol = math.exp(log_tol)
        self.tolerances[k] = tol
        head = self.gates[k].head
        self.sample_tolerances[k] = per_sample.detach().clamp(head.log_low, head.log_high).exp()
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
        rewards = torch.tensor([-self.eta / len(self.gates) * self.nfe[k] for k in ks], dtype=loss.dtype, device=loss.device)
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
    ``options``: ``hidden``, ``low``, ``high``, ``init_std`` of the gates, then ``eta``,
    ``gamma``, ``baseline_momentum``, ``lr`` of :class:`ToleranceGates`."""
    gate_keys = {"hidden", "low", "high", "init_std"}
    gate_options = {k: v for k, v in options.items() if k in gate_keys}
    rest = {k: v for k, v in options.items() if k not in gate_keys}
    return ToleranceGates([ConvGate(shape[0], **gate_options) for shape in block_shapes], **rest)
