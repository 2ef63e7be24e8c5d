"""Tolerance gates: the REINFORCE gradient, discounted returns, the tolerance range, input-dependent
policies, log-probabilities at the used action, the gates' own learning rate, and that disabled
gates change nothing."""
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
    torch.manual_seed(0)
    gate = MLPGate(5, low=1e-6, high=1e-3)
    mean, log_std = gate(torch.randn(7, 5))
    assert mean.shape == log_std.shape == (7,)
    middle = 0.5 * (math.log(1e-6) + math.log(1e-3))
    assert torch.allclose(mean, torch.full((7,), middle))  # starts at the middle of the range
    with torch.no_grad():
        torch.nn.init.normal_(gate.head.out.weight)
    learned = gate(torch.randn(7, 5))[0]
    assert learned.std() > 0  # with learned weights the policy is a function of the input
    assert (learned > math.log(1e-6)).all() and (learned < math.log(1e-3)).all()
    mean, _ = ConvGate(2)(torch.randn(3, 2, 4, 4))
    assert mean.shape == (3,)
    with pytest.raises(ValueError):
        MLPGate(5, low=1e-9, high=1e-3)
    with pytest.raises(ValueError):
        ConvGate(2, low=1e-3, high=1.0)
    with pytest.raises(ValueError):
        MLPGate(5, init_std=0.0)
    assert torch.allclose(log_std, torch.full((7,), math.log(0.5)))  # the fixed policy std


def _vector_flow() -> CNF:
    torch.manual_seed(0)
    return CNF(ConcatSquashMLP(2, (8,)), atol=1e-4, rtol=1e-4, trace="exact")


def test_tolerances_stay_in_the_gate_range_and_log_probs_are_at_the_used_action():
    """A wide policy (std 3 in log units) on a narrow range: every used tolerance lies in the
    gate's range on the 1/40-decade grid, and the recorded log-probability is the Normal's at
    log(tolerance used), not at the raw draw."""
    flow = _vector_flow()
    low, high = 1e-5, 1e-4
    gates = ToleranceGates([MLPGate(2, low=low, high=high, init_std=3.0)])  # 3 nats: wider than the range
    x = torch.randn(16, 2)
    seen = set()
    for _ in range(30):
        gates(0, flow, x)
        tol = gates.tolerances[0]
        assert low * (1 - 1e-9) <= tol <= high * (1 + 1e-9) and TOL_MIN <= tol <= TOL_MAX
        assert abs(math.log10(tol) * 40 - round(math.log10(tol) * 40)) < 1e-6
        mu, sigma, _ = gates.policy(0, x)
        expected = torch.distributions.Normal(mu, sigma).log_prob(torch.tensor(math.log(tol)))
        assert gates.log_probs[0].item() == pytest.approx(expected.item(), abs=1e-5)
        assert (gates.sample_tolerances[0] >= low * (1 - 1e-6)).all() and (gates.sample_tolerances[0] <= high * (1 + 1e-6)).all()
        seen.add(tol)
    assert any(abs(math.log(t / low)) < 1e-9 or abs(math.log(t / high)) < 1e-9 for t in seen)  # hits the clamp


def test_gates_have_their_own_learning_rate_in_fit():
    """fit's optimizer puts the gates (``own_lr``) in a parameter group of their own."""
    from cnflib.core.train import parameter_groups

    gates = ToleranceGates([MLPGate(2)], lr=0.05)
    model = nn.ModuleDict({"flow": nn.Linear(2, 2), "gates": gates})
    groups = parameter_groups(model)
    assert len(groups) == 2 and groups[1]["lr"] == 0.05 and "lr" not in groups[0]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in gates.parameters()}
    assert {id(p) for p in groups[0]["params"]} == {id(p) for p in model["flow"].parameters()}
    optimizer = torch.optim.Adam(groups, lr=1e-3)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-3, 0.05]
    assert len(parameter_groups(nn.Linear(2, 2))) == 1


def test_eta_is_the_nfe_weight_of_the_reward():
    """With equal log-probabilities the surrogate is -sum_k (R_k - b_k) log pi_k with
    r_k = -(eta / K) NFE_k and -L at the last block (first call: b = R, so it is zero; the second
    call with another NFE gives the closed form)."""
    gates = ToleranceGates([MLPGate(2), MLPGate(2)], eta=0.3, gamma=0.5, baseline_momentum=0.0)
    for nfe, expect_zero in ((20, True), (26, False)):
        gates.log_probs = {0: torch.tensor(1.0), 1: torch.tensor(1.0)}
        gates.nfe = {0: nfe, 1: 14}
        surrogate = gates.reinforce_loss(torch.tensor(2.0))
        if expect_zero:
            assert surrogate.item() == 0.0
    # returns R_0 = r_0 + 0.5 r_1; only r_0 changed (by -(0.3 / 2) * 6 = -0.9): R_0 - b_0 = -0.9
    assert surrogate.item() == pytest.approx(0.9)


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
    gates = image_gates(flow.block_shapes, low=1e-4, high=1e-2, eta=0.1).eval()
    with torch.no_grad():
        out = flow(torch.randn(4, 1, 8, 8), gates)
    assert sorted(gates.tolerances) == [0, 1] and flow.block_nfe == [gates.nfe[0], gates.nfe[1]] and out.nfe == sum(flow.block_nfe)
    assert gates.tolerances[0] == pytest.approx(1e-3, rel=0.5)  # eval: the policy mean, near the middle of the range
    assert isinstance(gates.gates[1], nn.Module) and gates.gates[1].body[0].in_channels == 2
