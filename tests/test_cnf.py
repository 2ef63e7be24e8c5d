"""Closed-form checks of the CNF core (instantaneous change of variables on torchdyn)."""
import math

import pytest
import torch
from torch import nn

from cnflib import StepBudgetExceeded
from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.cnf import CNFDynamics, exact_divergence, sample_noise


A = torch.tensor([[0.3, 1.0, 0.0], [-0.5, -0.2, 0.4], [0.1, 0.0, -0.6]])


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_linear_field_logdet_and_endpoint(trace, linear_field):
    T = 1.5
    cnf = CNF(linear_field(A), trace=trace, T=T, atol=1e-7, rtol=1e-7)
    x = torch.randn(4000 if trace == "hutchinson" else 16, 3)
    out = cnf(x)
    torch.testing.assert_close(out.z, x @ torch.linalg.matrix_exp(T * A).T, atol=1e-4, rtol=1e-4)
    expected = T * torch.trace(A)
    if trace == "exact":
        torch.testing.assert_close(out.delta_logp, expected.expand(16), atol=1e-5, rtol=0)
    else:  # unbiased: the mean over samples is within 4 standard errors of T tr(A)
        se = out.delta_logp.std() / math.sqrt(len(x))
        assert abs(out.delta_logp.mean() - expected) < 4 * se


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_is_unbiased_for_a_nonlinear_field(noise):
    field = ConcatSquashMLP(3, hidden=(16, 16))
    z = torch.randn(1, 3).requires_grad_(True)
    f = field(torch.tensor(0.3), z)
    exact = exact_divergence(f, z, create_graph=False).item()
    draws = []
    for _ in range(4000):
        e = sample_noise(noise, z)
        vjp = torch.autograd.grad(f, z, e, retain_graph=True)[0]
        draws.append((vjp * e).sum().item())
    draws = torch.tensor(draws)
    assert abs(draws.mean().item() - exact) < 4 * draws.std().item() / math.sqrt(len(draws))


def test_noise_is_drawn_once_per_solve():
    cnf = CNF(ConcatSquashMLP(2, hidden=(8,)), trace="hutchinson")
    x = torch.randn(5, 2)
    seen = []
    original = CNFDynamics.forward

    def spy(self, t, state, args=None):
        seen.append(self.noise.clone())
        return original(self, t, state, args)

    CNFDynamics.forward = spy
    try:
        cnf.log_prob(x)
    finally:
        CNFDynamics.forward = original
    assert len(seen) > 2 and all(torch.equal(s, seen[0]) for s in seen)


def test_adjoint_and_autograd_gradients_agree():
    cnf = CNF(ConcatSquashMLP(2, hidden=(16, 16)), T=0.5, atol=1e-7, rtol=1e-7)
    x = torch.randn(32, 2)

    def grads(sensitivity):
        cnf.zero_grad()
        with cnf.solver_options(sensitivity=sensitivity):
            (-cnf.log_prob(x).mean()).backward()
        return torch.cat([p.grad.flatten() for p in cnf.parameters()])

    adjoint, autograd = grads("adjoint"), grads("autograd")
    assert cnf.nfe_backward == 0  # autograd: no adjoint solve
    assert (adjoint - autograd).norm() / autograd.norm() < 1e-3


@pytest.mark.parametrize("dim", [1, 2])
def test_density_integrates_to_one(dim):
    cnf = CNF(ConcatSquashMLP(dim, hidden=(32, 32)), atol=1e-6, rtol=1e-6)
    with torch.no_grad():
        for p in cnf.parameters():  # a clearly non-Gaussian random flow
            p.mul_(3.0)
    n = 4000 if dim == 1 else 140
    axis = torch.linspace(-8, 8, n)
    cell = (axis[1] - axis[0]) ** dim
    points = axis[:, None] if dim == 1 else torch.cartesian_prod(axis, axis)
    with torch.no_grad():
        mass = (cnf.log_prob(points).exp().sum() * cell).item()
    assert abs(mass - 1.0) < 0.01


def test_sample_then_log_prob_round_trips():
    cnf = CNF(ConcatSquashMLP(2, hidden=(16, 16)), atol=1e-7, rtol=1e-7)
    x = cnf.sample(64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        z = cnf(x).z
        x_back = cnf.inverse(z)
    torch.testing.assert_close(x_back, x, atol=1e-4, rtol=1e-4)


def test_trajectory_ends_where_forward_ends():
    cnf = CNF(ConcatSquashMLP(2, hidden=(16,)), T=0.7)
    x = torch.randn(8, 2)
    traj = cnf.trajectory(x, torch.linspace(0, 0.7, 5))
    assert traj.shape == (5, 8, 2)
    torch.testing.assert_close(traj[0], x)
    with torch.no_grad():
        torch.testing.assert_close(traj[-1], cnf(x).z, atol=1e-4, rtol=1e-4)


def test_fixed_step_solver_uses_its_steps():
    cnf = CNF(ConcatSquashMLP(2, hidden=(8,)), solver="rk4", steps=5)
    with torch.no_grad():
        cnf.log_prob(torch.randn(4, 2))
    assert cnf.nfe_forward == 4 * 5


def test_step_budget_raises_instead_of_hanging():
    cnf = CNF(ConcatSquashMLP(2, hidden=(8,)), max_nfe=4)
    with pytest.raises(StepBudgetExceeded, match="budget of 4"):
        cnf.log_prob(torch.randn(4, 2))


def test_image_shaped_states():
    class ConvField(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)

        def forward(self, t, z):
            return torch.tanh(self.conv(z))

    cnf = CNF(ConvField(), dim=(1, 4, 4), trace="hutchinson")
    x = torch.randn(3, 1, 4, 4)
    assert cnf.log_prob(x).shape == (3,)
    assert cnf.sample(2).shape == (2, 1, 4, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"trace": "approx"}, "trace estimator"), ({"noise": "uniform"}, "noise"),
     ({"solver": "dopri8"}, "solver"), ({"sensitivity": "backprop"}, "sensitivity")],
)
def test_unknown_options_list_the_valid_ones(kwargs, match):
    with pytest.raises(ValueError, match=f"unknown {match} .*valid: "):
        CNF(ConcatSquashMLP(2), **kwargs)


def test_unknown_activation_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: tanh, softplus"):
        ConcatSquashMLP(2, activation="gelu2")


def test_a_used_flow_can_be_deep_copied():
    import copy

    cnf = CNF(ConcatSquashMLP(2, hidden=(8,)))
    x = torch.randn(4, 2)
    expected = cnf.log_prob(x)
    twin = copy.deepcopy(cnf)
    torch.testing.assert_close(twin.log_prob(x), expected)


@pytest.mark.parametrize("activation", ["tanh", "softplus", "sigmoid", "relu", "elu", "swish"])
def test_forward_mode_tangents_match_autograd_jacobian(activation):
    torch.manual_seed(0)
    field = ConcatSquashMLP(3, hidden=(7, 5), activation=activation).double()
    z, v, t = torch.randn(6, 3, dtype=torch.float64), torch.randn(2, 6, 3, dtype=torch.float64), torch.tensor(0.4)
    f, jv = field.jvp(t, z, v)
    torch.testing.assert_close(f, field(t, z))
    for k in range(2):
        expected = torch.autograd.functional.jvp(lambda zz: field(t, zz), z, v[k])[1]
        torch.testing.assert_close(jv[k], expected)


class PlainField(nn.Module):
    """The same field without ``jvp``: the divergence then comes from backward passes."""

    def __init__(self, field: nn.Module) -> None:
        super().__init__()
        self.field, self.dim = field, field.dim

    def forward(self, t, z):
        return self.field(t, z)


@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_forward_mode_and_backward_pass_divergences_agree_with_their_gradients(trace):
    torch.manual_seed(0)
    field = ConcatSquashMLP(2, hidden=(16, 16)).double()
    x = torch.randn(8, 2, dtype=torch.float64)
    results = []
    for f in (field, PlainField(field)):
        cnf = CNF(f, trace=trace, T=0.5, atol=1e-9, rtol=1e-9, sensitivity="adjoint")
        torch.manual_seed(1)  # the same Hutchinson noise
        out = cnf(x)
        grads = torch.autograd.grad(out.delta_logp.sum() + out.z.sum(), list(field.parameters()))
        results.append((out.delta_logp.detach(), grads))
    torch.testing.assert_close(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_exact_trace_in_chunks_of_basis_vectors(monkeypatch):
    field = ConcatSquashMLP(5, hidden=(8,))
    x = torch.randn(4, 5)
    whole = CNF(field, trace="exact")(x).delta_logp
    monkeypatch.setattr(CNFDynamics, "EXACT_TANGENT_ROWS", 8)  # two basis vectors per pass
    torch.testing.assert_close(CNF(field, trace="exact")(x).delta_logp, whole)


def test_hessian_vector_products_through_the_forward_mode_divergence():
    torch.manual_seed(0)
    field = ConcatSquashMLP(2, hidden=(8,)).double()
    x = torch.randn(6, 2, dtype=torch.float64)
    params = list(field.parameters())

    def hvp(f):
        cnf = CNF(f, trace="exact", solver="rk4", steps=4, sensitivity="autograd")
        grads = torch.autograd.grad(-cnf.log_prob(x).mean(), params, create_graph=True)
        v = [torch.ones_like(p) for p in params]
        return torch.autograd.grad(sum((g * u).sum() for g, u in zip(grads, v)), params)

    for a, b in zip(hvp(field), hvp(PlainField(field))):
        torch.testing.assert_close(a, b)
