"""Density helpers: Riemann mass, Gaussian fit, closed-form Hutchinson variances."""
import math

import pytest
import torch

from cnflib.density import gaussian_fit_log_prob, grid_mass, hutchinson_variance
from cnflib.models.cnf import sample_noise


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
