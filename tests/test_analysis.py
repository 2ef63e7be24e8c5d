"""Mode-collapse metric against closed forms; Hessian estimates against the exact Hessian."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cnflib.data import toy
from cnflib.data.toy import GaussianMixture
from cnflib.sparse import (LEVELS, Modes, extreme_eigenvalues, flow_hessian, hessian_stats, hutchinson_trace,
                           hutchpp_trace, lanczos, loss_hvp, mode_report, power_iteration, spectrum_convergence)
from cnflib.core import CNF, ConcatSquashMLP
from cnflib.sparse.pruning import prune_model


# -- modes ------------------------------------------------------------------------------------------
def test_directional_distance_closed_forms():
    modes = Modes(torch.tensor([[0.0, 0.0]]), torch.tensor([[[4.0, 0.0], [0.0, 1.0]]]))  # std 2 along x, 1 along y
    x = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    d = modes.distances(x)[:, 0]
    # along an axis: distance / std; diagonal: |x|^2 / sqrt(x^T S x) = 2 / sqrt(5)
    torch.testing.assert_close(d, torch.tensor([1.0, 3.0, 2.0 / math.sqrt(5.0)]))


def test_isotropic_gaussian_good_fraction_is_the_chi_cdf():
    # 2-D isotropic: P(|x - mu| / sigma <= k) = 1 - exp(-k^2 / 2)
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    data = centers[torch.randint(0, 2, (40_000,), generator=g)] + 0.5 * torch.randn(40_000, 2, generator=g)
    modes = Modes.from_data(data, centers)
    torch.testing.assert_close(modes.means, centers, atol=0.02, rtol=0)
    torch.testing.assert_close(modes.covariances, 0.25 * torch.eye(2).expand(2, 2, 2), atol=0.01, rtol=0)
    samples = 0.5 * torch.randn(20_000, 2, generator=g)  # all from mode 0: mode 1 collapsed
    report = mode_report(samples, modes, levels=(1.0, 2.0, 3.0))
    for k in (1.0, 2.0, 3.0):
        assert report.good[k] == pytest.approx(1 - math.exp(-k * k / 2), abs=0.01)
    assert report.captured[3.0] == 1 and report.missing == [1]
    assert report.as_dict()["good@2"] == pytest.approx(100 * report.good[2.0])


def test_far_samples_are_bad():
    modes = Modes(torch.zeros(1, 2), torch.eye(2)[None])
    report = mode_report(torch.full((10, 2), 100.0), modes)
    assert all(v == 0.0 for v in report.good.values()) and report.missing == [0]


def test_modes_from_mixture_are_the_generating_ones_in_any_coordinates():
    mix = toy.mixture("gaussians_spiral")
    modes = Modes.from_mixture("gaussians_spiral")
    torch.testing.assert_close(modes.means, mix.centers)
    torch.testing.assert_close(modes.covariances, mix.stds[:, None, None] ** 2 * torch.eye(2))
    torch.testing.assert_close(modes.target(), torch.full((10,), 0.1, dtype=torch.float64))
    x = mix.sample(2_000, torch.Generator().manual_seed(0))
    raw = modes.distances(x, "mahalanobis")
    torch.testing.assert_close(modes.distances(x), raw, atol=1e-4, rtol=1e-5)  # isotropic: the two metrics agree
    loc, scale = x.mean(0), x.std(0)  # the notebooks' standardization, anisotropic
    standardized = Modes.from_mixture(mix, loc, scale)
    torch.testing.assert_close(standardized.means, (mix.centers - loc) / scale)
    # Mahalanobis distances do not change with the coordinates; the directional ones do
    torch.testing.assert_close(standardized.distances((x - loc) / scale, "mahalanobis"), raw, atol=1e-4, rtol=1e-5)
    assert (standardized.distances((x - loc) / scale) - raw).abs().max() > 0.1
    with pytest.raises(ValueError, match="valid: directional, mahalanobis"):
        modes.distances(x, "euclidean")


def test_samples_of_the_mixture_capture_every_mode_with_mass_kl_near_zero():
    mix, modes = toy.mixture("gaussians_spiral"), Modes.from_mixture("gaussians_spiral")
    report = mode_report(mix.sample(20_000, torch.Generator().manual_seed(0)), modes, metric="mahalanobis",
                         min_count=100)
    assert set(report.captured) == set(LEVELS) and all(c == 10 for c in report.captured.values())
    assert report.missing == [] and report.mass == pytest.approx([0.1] * 10, abs=0.01)
    for k in LEVELS:  # 2-D: P(‖x − μ‖/σ ≤ k) = 1 − exp(−k²/2) (the modes are far apart)
        assert report.good[k] == pytest.approx(1 - math.exp(-k * k / 2), abs=0.01)
        assert 0 <= report.mass_kl[k] < 0.005  # E[KL] ≈ (K − 1)/(2N): ≤ 2e-3 for N ≥ 2,350 good samples
    assert report.as_dict()["kl@3"] == report.mass_kl[3.0]


def test_a_collapsed_sampler_misses_modes_and_has_large_mass_kl():
    mix, modes = toy.mixture("gaussians_spiral"), Modes.from_mixture("gaussians_spiral")
    g = torch.Generator().manual_seed(1)
    half = GaussianMixture(mix.centers[:5], mix.stds[:5], torch.full((5,), 0.2))  # only 5 of the 10 modes
    report = mode_report(half.sample(20_000, g), modes, metric="mahalanobis")
    assert all(c == 5 for c in report.captured.values()) and report.missing == [5, 6, 7, 8, 9]
    for k in LEVELS:  # evenly on m of K modes: KL = log(K/m)
        assert report.mass_kl[k] == pytest.approx(math.log(2), abs=0.01)
    # most mass on one mode, a trickle on the others: every mode "captured" at min_count 1, yet KL is large
    skewed = GaussianMixture(mix.centers, mix.stds, torch.tensor([0.91] + [0.01] * 9))
    report = mode_report(skewed.sample(20_000, g), modes, metric="mahalanobis")
    assert report.captured[3.0] == 10
    exact = 0.91 * math.log(9.1) + 9 * 0.01 * math.log(0.1)
    assert report.mass_kl[3.0] == pytest.approx(exact, abs=0.02)
    assert mode_report(skewed.sample(20_000, g), modes, min_count=500).captured[3.0] == 1
    # blurred modes (std doubled): all captured, mass even, but few good samples: 1 − exp(−k²/8)
    blur = mode_report(GaussianMixture(mix.centers, 2 * mix.stds, mix.weights).sample(20_000, g), modes,
                       metric="mahalanobis")
    assert blur.captured[1.0] == 10 and blur.mass_kl[3.0] < 0.005
    assert blur.good[1.0] == pytest.approx(1 - math.exp(-1 / 8), abs=0.01)


# -- Hessian ---------------------------------------------------------------------------------------------
def quadratic_hvp(matrix: torch.Tensor):
    return lambda v: matrix @ v


def random_symmetric(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g))
    eig = torch.linspace(-0.5, 3.0, n)
    return (q * eig) @ q.T


def test_power_iteration_lanczos_and_hutchinson_on_a_matrix():
    a = random_symmetric(20)
    exact = torch.linalg.eigvalsh(a.double())
    g = torch.Generator().manual_seed(1)
    lam, v = power_iteration(quadratic_hvp(a), 20, iters=500, tol=1e-9, generator=g)
    assert lam == pytest.approx(exact[-1].item(), rel=1e-3)
    torch.testing.assert_close(lanczos(quadratic_hvp(a), 20, steps=20, generator=g), exact, atol=1e-4, rtol=0)
    trace, stderr = hutchinson_trace(quadratic_hvp(a), 20, samples=2000, generator=g)
    assert abs(trace - a.trace().item()) < 4 * stderr + 1e-6


def test_hessian_stats_lambda_max_is_the_top_even_when_lambda_min_dominates():
    # |λ_min| = 3 > λ_max = 1: power iteration converges to -3; the reported λ_max is the top Ritz value
    g = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    a = (q * torch.linspace(-3.0, 1.0, 12)) @ q.T
    assert power_iteration(quadratic_hvp(a), 12, iters=500, tol=1e-9, generator=g)[0] == pytest.approx(-3.0, rel=1e-3)
    stats = hessian_stats(quadratic_hvp(a), 12, power_iters=500, trace_samples=4, lanczos_steps=12)
    assert stats.lambda_max == pytest.approx(1.0, rel=1e-4) and stats.lambda_min == pytest.approx(-3.0, rel=1e-4)
    assert stats.converged is None and math.isnan(stats.lambda_max_residual)
    assert 4 + 12 < stats.matvecs <= 500 + 4 + 12
    converged = hessian_stats(quadratic_hvp(a), 12, trace_samples=4, lanczos_steps=12, eigensolver="eigsh")
    assert converged.lambda_max == pytest.approx(1.0, rel=1e-4)
    assert converged.lambda_min == pytest.approx(-3.0, rel=1e-4)
    assert converged.converged and converged.matvecs == 12 + 4 + 12  # n <= ncv: the dense spectrum from 12 products
    assert set(converged.as_dict()) == {"lambda_max", "trace", "trace_stderr", "lambda_min", "kappa"}
    assert converged.as_dict(detail=True)["matvecs"] == converged.matvecs
    with pytest.raises(ValueError, match="valid: lanczos, eigsh"):
        hessian_stats(quadratic_hvp(a), 12, eigensolver="arpack")


def test_hutchpp_trace_is_unbiased_with_honest_errors_and_beats_hutchinson_on_outliers():
    g = torch.Generator().manual_seed(2)
    q, _ = torch.linalg.qr(torch.randn(60, 60, generator=g))
    eig = torch.cat([torch.tensor([100.0, 40.0, -20.0]), torch.linspace(-1.0, 1.0, 57)])  # outliers, as in networks
    a = (q * eig) @ q.T
    exact = eig.sum().item()
    plain = [hutchinson_trace(quadratic_hvp(a), 60, samples=30, generator=g) for _ in range(200)]
    sketched = [hutchpp_trace(quadratic_hvp(a), 60, samples=30, generator=g) for _ in range(200)]
    for results in (plain, sketched):  # unbiased, and ±2 se covers the truth about 95% of the time
        estimates = torch.tensor([t for t, _ in results])
        errors = torch.tensor([se for _, se in results])
        assert abs(estimates.mean().item() - exact) < 4 * estimates.std().item() / 200**0.5
        assert 0.88 <= ((estimates - exact).abs() <= 2 * errors).float().mean().item() <= 1.0
    assert torch.tensor([se for _, se in sketched]).median() < 0.2 * torch.tensor([se for _, se in plain]).median()
    trace, stderr = hutchpp_trace(quadratic_hvp(a[:5, :5]), 5, samples=15, generator=g)  # samples >= 3n: exact
    assert trace == pytest.approx(a[:5, :5].trace().item(), abs=1e-5) and stderr == 0.0


def test_eigsh_ends_of_a_near_singular_spectrum_in_bounded_products():
    # a network-like spectrum: two outliers and 2,998 eigenvalues clustered at 0 (λ_min = -1e-3 at its edge)
    n = 3000
    d = torch.cat([torch.tensor([5.0]), torch.linspace(-1e-3, 1e-3, n - 1)])
    result = extreme_eigenvalues(lambda v: d * v, n, tol=1e-4, maxiter=30, ncv=20)
    assert result.converged and result.matvecs <= 2 * 20 * 31
    assert result.lambda_max == pytest.approx(5.0, rel=1e-4)
    assert abs(result.lambda_min - -1e-3) <= 1e-4 * (5.0 + 1e-3)  # accuracy relative to the spectrum's width
    for value, residual in ((result.lambda_max, result.lambda_max_residual),
                            (result.lambda_min, result.lambda_min_residual)):
        assert (d.double() - value).abs().min() <= residual + 1e-7  # Weyl: an eigenvalue within the residual


def test_eigsh_without_convergence_warns_and_returns_bounds():
    n = 3000
    d = torch.linspace(0.0, 1.0, n)  # no gap at either end: one restart cannot reach tol 1e-8
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        result = extreme_eigenvalues(lambda v: d * v, n, tol=1e-8, maxiter=1, ncv=20)
    assert not result.converged and result.matvecs <= 2 * 20 * 2 + 2
    assert 0.0 < result.lambda_max <= 1.0 + 1e-6 and 0.0 - 1e-6 <= result.lambda_min < 1.0  # Rayleigh-quotient bounds
    for value, residual in ((result.lambda_max, result.lambda_max_residual),
                            (result.lambda_min, result.lambda_min_residual)):
        assert (d.double() - value).abs().min() <= residual + 1e-6


def test_spectrum_convergence_tables():
    a = random_symmetric(40)
    exact = torch.linalg.eigvalsh(a.double())
    eigen, trace = spectrum_convergence(quadratic_hvp(a), 40, tols=(1e-2, 1e-5), probes=(30, 120), seed=3)
    assert list(eigen.index) == [1e-2, 1e-5] and list(trace.index) == [30, 120]
    assert eigen.converged.all() and (eigen.matvecs > 0).all()
    assert eigen.lambda_max.tolist() == pytest.approx([exact[-1].item()] * 2, rel=1e-2)
    assert eigen.lambda_min[1e-5] == pytest.approx(exact[0].item(), abs=1e-4)
    assert (abs(trace.trace - a.trace().item()) < 4 * trace.trace_stderr + 1e-4).all()
    assert trace.matvecs.tolist() == [30, 120]


def small_flow() -> tuple[CNF, torch.Tensor]:
    torch.manual_seed(0)
    cnf = CNF(ConcatSquashMLP(2, hidden=(4,), activation="softplus"), solver="rk4", steps=2, sensitivity="autograd")
    return cnf, torch.randn(32, 2)


def exact_hessian(cnf: CNF, x: torch.Tensor) -> torch.Tensor:
    names = [n for n, _ in cnf.named_parameters()]
    shapes = [p.shape for _, p in cnf.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in cnf.named_parameters()])

    def loss(theta: torch.Tensor) -> torch.Tensor:
        params = dict(zip(names, (c.view(s) for c, s in zip(theta.split([math.prod(s) for s in shapes]), shapes))))
        return -_log_prob(cnf, params, x).mean()

    return torch.autograd.functional.hessian(loss, flat)


def _log_prob(cnf: CNF, params: dict, x: torch.Tensor) -> torch.Tensor:
    from cnflib.core import standard_normal_log_prob

    out = functional_call(cnf, params, (x,))
    return standard_normal_log_prob(out.z) + out.delta_logp


def test_flow_hessian_matches_the_exact_hessian():
    cnf, x = small_flow()
    h = exact_hessian(cnf, x).double()
    eig = torch.linalg.eigvalsh(h)
    n = h.shape[0]
    hvp, m = loss_hvp(cnf, lambda: -cnf.log_prob(x).mean())
    assert m == n
    v = torch.randn(n)
    torch.testing.assert_close(hvp(v).double(), h @ v.double(), atol=1e-4, rtol=1e-4)
    stats = flow_hessian(cnf, x, power_iters=300, trace_samples=300, lanczos_steps=n, positive_tol=1e-6)
    top = eig.abs().max().item()
    assert stats.lambda_max == pytest.approx(eig[-1].item(), rel=1e-3)
    assert stats.lambda_min == pytest.approx(eig[0].item(), abs=1e-4 * top)
    assert abs(stats.trace - eig.sum().item()) < 4 * stats.trace_stderr
    positive = eig[eig > 1e-6 * top]
    assert stats.condition == pytest.approx((eig[-1] / positive.min()).item(), rel=1e-2)


def test_eigsh_extremes_and_trace_match_the_exact_hessian_of_a_flow():
    cnf, x = small_flow()
    eig = torch.linalg.eigvalsh(exact_hessian(cnf, x).double())
    n = len(eig)
    hvp, _ = loss_hvp(cnf, lambda: -cnf.log_prob(x).mean())
    result = extreme_eigenvalues(hvp, n, tol=1e-6, maxiter=50, ncv=10)  # ncv < n: ARPACK, not the dense path
    width = (eig[-1] - eig[0]).item()
    assert result.converged and result.matvecs <= 2 * 10 * 51
    assert result.lambda_max == pytest.approx(eig[-1].item(), rel=1e-5)
    assert abs(result.lambda_min - eig[0].item()) <= 1e-5 * width
    assert result.lambda_max_residual < 1e-5 * width and result.lambda_min_residual < 1e-5 * width
    stats = flow_hessian(cnf, x, eigensolver="eigsh", tol=1e-6, trace_samples=400, lanczos_steps=10)
    assert stats.lambda_max == pytest.approx(eig[-1].item(), rel=1e-5) and stats.converged
    assert abs(stats.trace - eig.sum().item()) < 4 * stats.trace_stderr
    assert stats.trace_stderr < 0.1 * abs(eig.sum().item())  # 400 probes resolve the trace's sign and size
    sketched = flow_hessian(cnf, x, eigensolver="eigsh", trace_samples=45, lanczos_steps=10, trace_estimator="hutch++")
    assert abs(sketched.trace - eig.sum().item()) < 4 * sketched.trace_stderr + 1e-4
    assert sketched.trace_stderr < stats.trace_stderr  # 45 products against 400


def test_hessian_of_a_pruned_flow_is_restricted_to_remaining_weights():
    cnf, x = small_flow()
    full = exact_hessian(cnf, x).double()
    prune_model(cnf, 0.5, "unstructured")
    hvp, m = loss_hvp(cnf, lambda: -cnf.log_prob(x).mean())
    n_masked = sum(int(b.eq(0).sum()) for name, b in cnf.named_buffers() if name.endswith("_mask"))
    assert m == full.shape[0] - n_masked
    stats = hessian_stats(hvp, m, power_iters=5, trace_samples=5, lanczos_steps=m)
    assert math.isfinite(stats.lambda_max) and stats.n == m


def test_adjoint_cannot_give_hessians_but_flow_hessian_switches_to_autograd():
    cnf, x = small_flow()
    cnf.options = cnf.options.__class__(solver="rk4", steps=2, sensitivity="adjoint")
    stats = flow_hessian(cnf, x, power_iters=3, trace_samples=3, lanczos_steps=5)
    assert cnf.options.sensitivity == "adjoint" and math.isfinite(stats.lambda_max)
