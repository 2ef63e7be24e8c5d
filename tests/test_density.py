"""Density helpers: Riemann mass, Gaussian fit, closed-form Hutchinson variances."""
import math

import pytest
import torch

from cnflib.core.density import gaussian_fit_log_prob, grid_mass, hutchinson_variance
from cnflib.core.cnf import sample_noise


def test_grid_mass_of_a_gaussian_is_one():
    normal = torch.distributions.MultivariateNormal(torch.zeros(2), torch.eye(2) * 0.5)
    assert grid_mass(normal.log_prob, (-6, 6), 200, 2) == pytest.approx(1.0, abs=1e-4)


def test_gaussian_fit_recovers_mean_and_covariance():
    cov = torch.tensor([[2.0, 0.6], [0.6, 0.5]])
    x = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0]), cov).sample((50_000,))
    fitted = gaussian_fit_log_prob(x)
    exact = torch.distributions.MultivariateNormal(torch.tensor([1.0, -2.0]), cov).log_prob
    fitted_ll, exact_ll = fitted(x).mean().item(), exact(x).mean().item()
    assert exact_ll <= fitted_ll + 1e-6  # the maximum-likelihood fit beats the true parameters on its data
    assert fitted_ll - exact_ll < 1e-3


@pytest.mark.parametrize("noise", ["gaussian", "rademacher"])
def test_hutchinson_variance_matches_simulation(noise):
    J = torch.randn(6, 6)
    e = sample_noise(noise, torch.empty(200_000, 6))
    draws = torch.einsum("ni,ij,nj->n", e, J, e)
    assert draws.mean().item() == pytest.approx(torch.trace(J).item(), abs=5 * draws.std().item() / math.sqrt(len(e)))
    assert draws.var().item() == pytest.approx(hutchinson_variance(J, noise).item(), rel=0.03)


def test_unknown_noise_lists_the_valid_ones():
    with pytest.raises(ValueError, match="valid: gaussian, rademacher"):
        hutchinson_variance(torch.eye(2), "uniform")


def test_mean_nll_in_chunks_equals_one_solve_for_a_linear_field():
    # f(z) = A z with a fixed step solver: per-point results do not depend on the batch.
    from cnflib.core.density import mean_nll
    from cnflib.core import CNF

    class Linear(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.A = torch.nn.Parameter(torch.tensor([[0.3, -0.2], [0.1, -0.4]]))

        def forward(self, t, z):
            return z @ self.A.T

    flow = CNF(Linear(), dim=2, trace="exact", solver="rk4", steps=8)
    x = torch.randn(50, 2)
    whole, nfe_whole = mean_nll(flow, x)
    chunked, nfe_chunked = mean_nll(flow, x, batch_size=16)
    assert chunked == pytest.approx(whole, abs=1e-5)
    assert nfe_chunked == nfe_whole
    # the closed form: log p(x) = log N(e^{AT} x) + T tr(A)
    z = x @ torch.linalg.matrix_exp(flow.T * Linear().A.detach()).T
    exact = -(torch.distributions.Normal(0, 1).log_prob(z).sum(1) + flow.T * torch.trace(Linear().A.detach())).mean()
    assert whole == pytest.approx(exact.item(), abs=1e-4)
