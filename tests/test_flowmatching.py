"""cnflib.flowmatching against closed forms: the conditional path and its marginal velocity for Gaussian end
points, the minibatch OT coupling against a brute-force assignment, fitted fields on Gaussian-to-Gaussian
problems, and the sliced Wasserstein distance."""
import itertools
import math

import pytest
import torch

from cnflib.core import CNF, ConcatSquashMLP, sliced_wasserstein
from cnflib.core.density import mean_nll
from cnflib.flowmatching import (cfm_loss, conditional_path, couple, gaussian_marginal, gaussian_marginal_velocity,
                                 ot_assignment, squared_distances, train_matching, transport_cost)


def test_the_conditional_path_joins_the_pair_at_constant_speed():
    x0, x1 = torch.randn(5, 3), torch.randn(5, 3)
    T = 2.0
    start, u = conditional_path(x0, x1, torch.zeros(5), T=T)
    end, _ = conditional_path(x0, x1, torch.full((5,), T), T=T)
    mid, _ = conditional_path(x0, x1, torch.tensor(0.5 * T), T=T)
    torch.testing.assert_close(start, x0)
    torch.testing.assert_close(end, x1)
    torch.testing.assert_close(mid, 0.5 * (x0 + x1))
    torch.testing.assert_close(u, (x1 - x0) / T)
    noise = torch.randn(5, 3)
    widened, _ = conditional_path(x0, x1, torch.full((5,), 0.3), sigma=0.1, noise=noise, T=T)
    torch.testing.assert_close(widened, conditional_path(x0, x1, torch.full((5,), 0.3), T=T)[0] + 0.1 * noise)


@pytest.mark.parametrize("t, sigma", [(0.2, 0.0), (0.5, 0.0), (0.8, 0.1)])
def test_the_marginal_velocity_of_independent_gaussians_is_the_regression_of_the_conditional_one(t, sigma):
    """E[u | x_t] is linear in x_t for Gaussian end points: a least-squares fit of the conditional velocity on
    x_t recovers the closed form's slope and intercept (the minimizer of the CFM loss at time t)."""
    g = torch.Generator().manual_seed(1)
    n, mean0, std0, mean1, std1 = 400_000, torch.tensor([2.0, -1.0]), 0.5, torch.tensor([0.0, 0.0]), 1.0
    x0 = (mean0 + std0 * torch.randn(n, 2, generator=g)).double()
    x1 = (mean1 + std1 * torch.randn(n, 2, generator=g)).double()
    xt, u = conditional_path(x0, x1, torch.tensor(t), sigma=sigma, noise=torch.randn(n, 2, generator=g).double())
    design = torch.cat([xt, torch.ones(n, 1, dtype=xt.dtype)], 1)
    coef = torch.linalg.lstsq(design, u).solution  # u ~ xt @ coef[:2] + coef[2]
    mean, std = gaussian_marginal(t, mean0, std0, mean1, std1, sigma)
    probe = mean.double() + std * torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, -1.0]], dtype=torch.float64)
    fitted = probe @ coef[:2] + coef[2]
    expected = gaussian_marginal_velocity(t, probe, mean0.double(), std0, mean1.double(), std1, sigma)
    torch.testing.assert_close(fitted, expected, atol=0.02, rtol=0)
    torch.testing.assert_close(xt.mean(0).float(), mean, atol=0.01, rtol=0)
    torch.testing.assert_close(xt.std(0).float(), torch.full((2,), std), atol=0.01, rtol=0)


def test_the_closed_form_velocity_transports_the_marginals():
    """Sanity check (continuity equation for a linear field): d std_t / dt = slope_t * std_t."""
    mean0, mean1 = torch.tensor([1.0]), torch.tensor([-2.0])
    for t in (0.1, 0.4, 0.9):
        h = 1e-4
        _, s_plus = gaussian_marginal(t + h, mean0, 0.7, mean1, 1.3, 0.05)
        _, s_minus = gaussian_marginal(t - h, mean0, 0.7, mean1, 1.3, 0.05)
        m, s = gaussian_marginal(t, mean0, 0.7, mean1, 1.3, 0.05)
        u = lambda x: gaussian_marginal_velocity(t, x, mean0, 0.7, mean1, 1.3, 0.05)
        slope = (u(m + 1) - u(m)).item()
        assert (s_plus - s_minus) / (2 * h) == pytest.approx(slope * s, rel=1e-3)
        assert u(m).item() == pytest.approx((mean1 - mean0).item())  # the mean moves at the mean's speed


@pytest.mark.parametrize("seed", range(4))
def test_the_ot_assignment_is_the_best_permutation(seed):
    g = torch.Generator().manual_seed(seed)
    x0, x1 = torch.randn(6, 2, generator=g), torch.randn(6, 2, generator=g)
    cost = squared_distances(x0, x1)
    best = min(sum(cost[i, p[i]].item() for i in range(6)) for p in itertools.permutations(range(6)))
    perm = ot_assignment(x0, x1)
    assert sorted(perm.tolist()) == list(range(6))
    assert transport_cost(x0, x1[perm]) * 6 == pytest.approx(best, rel=1e-6)
    assert transport_cost(*couple(x0, x1, "ot")) <= transport_cost(*couple(x0, x1, "independent"))


def test_couplings_check_their_arguments():
    with pytest.raises(ValueError, match="coupling"):
        couple(torch.zeros(2, 2), torch.zeros(2, 2), "sinkhorn")
    with pytest.raises(ValueError, match="equal size"):
        ot_assignment(torch.zeros(2, 2), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="coupling"):
        cfm_loss("exact")


def test_a_field_takes_one_time_per_sample():
    field = ConcatSquashMLP(2, (8,))
    t, z = torch.rand(4), torch.randn(4, 2)
    rows = torch.cat([field(t[i], z[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(field(t, z), rows)
    _, jv = field.jvp(t, z, torch.eye(2)[:, None, :].expand(2, 4, 2))
    _, jv_rows = zip(*[field.jvp(t[i], z[i:i + 1], torch.eye(2)[:, None, :]) for i in range(4)])
    torch.testing.assert_close(jv, torch.cat(jv_rows, 1))


def test_the_ot_pairs_of_the_loss_are_cheaper_and_training_solves_no_ode():
    torch.manual_seed(0)
    model = CNF(ConcatSquashMLP(2, (8,)))
    x = torch.randn(64, 2) + 3
    torch.manual_seed(1)
    _, independent = cfm_loss("independent")(model, x)
    torch.manual_seed(1)
    _, ot = cfm_loss("ot")(model, x)
    assert ot["pair_cost"] < independent["pair_cost"]
    assert model.dynamics.total_forward == 0


def _grid(t: float, n: int = 7) -> tuple[torch.Tensor, torch.Tensor]:
    axis = torch.linspace(-1.0, 1.0, n)
    return torch.full((n * n,), t), torch.cartesian_prod(axis, axis)


@pytest.fixture(scope="module")
def translated_gaussian() -> torch.Tensor:
    return torch.randn(20_000, 2, generator=torch.Generator().manual_seed(0)) + torch.tensor([2.0, -1.0])


def test_ot_matching_of_a_translated_gaussian_learns_the_straight_line_field(translated_gaussian):
    """Data N(m, I) at t = 0, base N(0, I) at t = 1: the OT map is x -> x - m, the field the constant -m,
    and the flow's exact NLL of the data is the entropy of N(m, I), 1 + log(2 pi)."""
    torch.set_num_threads(1)
    m = torch.tensor([2.0, -1.0])
    model, history = train_matching(translated_gaussian, coupling="ot", steps=300, hidden=(32, 32), batch_size=256,
                                    lr=1e-2, seed=0)
    assert int(history.nfe_forward.sum() + history.nfe_backward.sum()) == 0
    with torch.no_grad():
        for t in (0.1, 0.5, 0.9):
            tt, x = _grid(t)
            x = x + (1 - t) * m  # the bulk of the marginal at time t
            err = (model.vector_field(tt, x) + m).norm(dim=1)
            assert err.mean() < 0.15, (t, err.mean())
    nll, _ = mean_nll(model, translated_gaussian[:2000], atol=1e-5, rtol=1e-5)
    assert nll == pytest.approx(1 + math.log(2 * math.pi), abs=0.05)


def test_independent_matching_learns_the_closed_form_marginal_field(translated_gaussian):
    torch.set_num_threads(1)
    m, zero = torch.tensor([2.0, -1.0]), torch.zeros(2)
    # the conditional target is noisy (crossing pairs): a decaying learning rate averages it out
    model, _ = train_matching(translated_gaussian, coupling="independent", steps=400, hidden=(32, 32),
                              batch_size=256, lr=1e-2, seed=0, lr_schedule=lambda k: max(0.02, 1 - k / 400))
    with torch.no_grad():
        for t in (0.25, 0.5, 0.75):
            tt, x = _grid(t)
            x = x + (1 - t) * m
            expected = gaussian_marginal_velocity(t, x, m, 1.0, zero, 1.0)
            err = (model.vector_field(tt, x) - expected).norm(dim=1)
            assert err.mean() < 0.2, (t, err.mean())
            if t != 0.5:  # and, except at t = 1/2 (slope 0), it is not the straight-line field -m (pairs cross)
                assert (expected + m).norm(dim=1).max() > 0.3


def test_sliced_wasserstein_of_a_translation_is_its_closed_form():
    g = torch.Generator().manual_seed(0)
    x, m = torch.randn(500, 2, generator=g), torch.tensor([0.6, -0.8])
    # projections of a translated set keep their order: SW^2 = mean over directions of (theta . m)^2 -> |m|^2 / 2
    assert sliced_wasserstein(x, x + m, n_projections=20_000, generator=g) == pytest.approx(m.norm().item() / math.sqrt(2), rel=0.02)
    assert sliced_wasserstein(x, x[torch.randperm(500, generator=g)], generator=g) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="same shape"):
        sliced_wasserstein(x, x[:10])
