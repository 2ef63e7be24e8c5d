"""Tolerance gates: the REINFORCE gradient, discounted returns, the tolerance range, and that
disabled gates change nothing."""
import math

import pytest
import torch
from torch import nn

from cnflib.infocnf.gates import (TOL_MAX, TOL_MIN, ConvGate, MLPGate, ToleranceGates, discounted_returns,
                          image_gates, reinforce_surrogate)
from cnflib.core import CNF, ConcatSquashMLP
from cnflib.models.image_cnf import MultiscaleCNF


def test_discounted_returns_closed_form():
    r = torch.tensor([1.0, 2.0, 3.0])
    g = 0.5
    assert torch.allclose(discounted_returns(r, g), torch.tensor([1 + g * 2 + g * g * 3, 2 + g * 3, 3.0]))


def test_reinforce_gradient_matches_the_expectation_on_a_toy_policy():
    """Policy a ~ N(theta, s^2), reward -(a - c)^2: E[r] = -(theta - c)^2 - s^2, so
    dE/dtheta = -2 (theta - c) and dE/ds = -2 s. The mean REINFORCE surrogate gradient over many
    samples (with or without a constant baseline) matches both."""
    torch.manual_seed(0)
    theta = torch.tensor(0.3, requires_grad=True)
    log_s = torch.tensor(math.log(0.5), requires_grad=True)
    c, n = 1.0, 200_000
    dist = torch.distributions.Normal(theta, log_s.exp())
    a = dist.sample((n,))
    reward = -(a - c) ** 2
    for baseline in (None, torch.full((n,), float(reward.mean()))):
        theta.grad = log_s.grad = None
        (reinforce_surrogate(dist.log_prob(a), reward, baseline) / n).backward(retain_graph=True)
        assert -theta.grad.item() == pytest.approx(-2 * (0.3 - c), abs=0.02)
        assert -log_s.grad.item() == pytest.approx(-2 * 0.25, abs=0.02)  # dE/dlog s = s * dE/ds


def test_surrogate_gradient_is_the_finite_sample_formula():
    """On a finite sample the surrogate's gradient is exactly -sum_k (R_k - b_k) d log pi_k / d mu."""
    mu = torch.tensor([0.1, -0.2], requires_grad=True)
    a = torch.tensor([0.5, 0.3])
    logp = torch.distributions.Normal(mu, 1.0).log_prob(a)
    returns, baseline = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.5])
    reinforce_surrogate(logp, returns, baseline).backward()
    assert torch.allclose(mu.grad, -(returns - baseline) * (a - mu.detach()))


def test_gate_outputs_and_range_validation():
    mean, log_std = MLPGate(5, low=1e-6, high=1e-3)(torch.randn(7, 5))
    assert mean.shape == log_std.shape == (7,)
    assert torch.allclose(mean, torch.full((7,), 0.5 * (math.log(1e-6) + math.log(1e-3))))
    mean, _ = ConvGate(2)(torch.randn(3, 2, 4, 4))
    assert mean.shape == (3,)
    with pytest.raises(ValueError):
        MLPGate(5, low=1e-9, high=1e-3)
    with pytest.raises(ValueError):
        ConvGate(2, low=1e-3, high=1.0)


def _vector_flow() -> CNF:
    torch.manual_seed(0)
    return CNF(ConcatSquashMLP(2, (8,)), atol=1e-4, rtol=1e-4, trace="exact")


def test_tolerances_stay_in_range_even_for_a_wild_policy():
    flow = _vector_flow()
    gates = ToleranceGates([MLPGate(2, low=1e-8, high=1e-1, init_std=math.e)])  # log std clamped at 1
    with torch.no_grad():
        gates.gates[0].head.out.bias[1] = 10.0
    x = torch.randn(16, 2)
    for _ in range(30):
        gates(0, flow, x)
        assert TOL_MIN <= gates.tolerances[0] <= TOL_MAX
        assert (gates.sample_tolerances[0] >= TOL_MIN).all() and (gates.sample_tolerances[0] <= TOL_MAX).all()


def test_disabled_gates_change_nothing():
    flow = _vector_flow()
    x = torch.randn(16, 2)
    with torch.no_grad():
        ref = flow(x)
        nfe = flow.nfe_forward
        gates = ToleranceGates([MLPGate(2, low=1e-2, high=1e-1)])
        gates.enabled = False
        out = gates(0, flow, x)
    assert torch.equal(out.z, ref.z) and torch.equal(out.delta_logp, ref.delta_logp)
    assert flow.nfe_forward == nfe and gates.tolerances == {} and not gates.log_probs
    assert gates.reinforce_loss(torch.tensor(1.0)).item() == 0.0


def test_gated_solve_uses_the_sampled_tolerance_and_rewards_fewer_evaluations():
    flow = _vector_flow()
    x = torch.randn(16, 2)
    loose = ToleranceGates([MLPGate(2, low=1e-2, high=1e-1, init_std=1e-3)])
    tight = ToleranceGates([MLPGate(2, low=1e-8, high=1e-7, init_std=1e-3)])
    loose(0, flow, x)
    tight(0, flow, x)
    assert loose.nfe[0] < tight.nfe[0]
    assert flow.options.atol == 1e-4  # the block's own settings are restored
    assert 1e-2 <= loose.tolerances[0] <= 1e-1
    # the surrogate is a differentiable scalar reaching the gate parameters
    surrogate = loose.reinforce_loss(torch.tensor(0.5))
    surrogate.backward()
    assert loose.gates[0].head.out.bias.grad is not None and not loose.log_probs


def test_image_gates_one_per_block():
    flow = MultiscaleCNF((1, 8, 8), scales=2, hidden=(4,), trace="exact", atol=1e-3, rtol=1e-3)
    gates = image_gates(flow.block_shapes, low=1e-4, high=1e-2, cost=0.1).eval()
    with torch.no_grad():
        out = flow(torch.randn(4, 1, 8, 8), gates)
    assert sorted(gates.tolerances) == [0, 1] and flow.block_nfe == [gates.nfe[0], gates.nfe[1]] and out.nfe == sum(flow.block_nfe)
    assert gates.tolerances[0] == pytest.approx(1e-3, rel=0.06)  # eval: the policy mean, the middle of the range
    assert isinstance(gates.gates[1], nn.Module) and gates.gates[1].body[0].in_channels == 2
