"""Mode-collapse metric against closed forms; Hessian estimates against the exact Hessian."""
import math

import pytest
import torch
from torch import nn
from torch.func import functional_call

from cnflib.sparse import Modes, flow_hessian, hessian_stats, hutchinson_trace, lanczos, loss_hvp, mode_report, power_iteration
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
