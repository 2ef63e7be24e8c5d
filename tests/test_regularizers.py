"""RNODE regularizers against closed forms on linear fields dz/dt = A z, and regularized training."""
import math

import pytest
import torch

from cnflib.core import CNF, ConcatSquashMLP
from cnflib.rnode.regularizers import JacobianFrobenius, KineticEnergy, rnode_regularizers
from cnflib.rnode.straightness import kinetic_ratio, path_length, straightness
from cnflib.core.train import fit, flow_loss


@pytest.fixture
def _flow(linear_field):
    """``_flow(A, **options)``: a CNF of ``f = A z`` integrating RNODE's two regularizers."""

    def make(A, **kwargs):
        options = dict(trace="exact", atol=1e-8, rtol=1e-8, sensitivity="autograd", T=0.7)
        options.update(kwargs)
        return CNF(linear_field(A), regularizers=[KineticEnergy(), JacobianFrobenius()], **options)

    return make


def test_kinetic_closed_form_diagonal(_flow):
    # z_i(t) = x_i e^{a_i t}: int_0^T 1/2 mean_i (a_i z_i)^2 dt = 1/(2D) sum_i a_i x_i^2 (e^{2 a_i T} - 1) / 2
    torch.manual_seed(0)
    a = torch.tensor([-1.0, 0.5, 1.5])
    x = torch.randn(16, 3)
    T = 0.7
    out = _flow(torch.diag(a), T=T)(x)
    expected = (a * x**2 * (torch.exp(2 * a * T) - 1) / 2).sum(1) / (2 * 3)
    torch.testing.assert_close(out.regularizers["kinetic"], expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.delta_logp, torch.full((16,), a.sum().item() * T), rtol=1e-5, atol=1e-6)


def test_kinetic_and_jacobian_closed_form_rotation(_flow):
    # A = w J (rotation): |A z| = w |x| along the path; eps^T A = w eps^T J has |.|^2 = w^2 |eps|^2 = 2 w^2
    # for Rademacher eps in 2-D, so both integrals are exact whatever the noise draw.
    torch.manual_seed(1)
    w, T = 1.3, 0.7
    A = w * torch.tensor([[0.0, -1.0], [1.0, 0.0]])
    x = torch.randn(32, 2)
    for trace in ("exact", "hutchinson"):
        out = _flow(A, T=T, trace=trace, noise="rademacher")(x)
        torch.testing.assert_close(out.regularizers["kinetic"], T * w**2 * x.pow(2).sum(1) / 4, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(out.regularizers["jacobian"], torch.full((32,), T * w**2), rtol=1e-5, atol=1e-7)


def test_jacobian_frobenius_unbiased(_flow):
    # E[mean_i (eps^T A)_i^2] = |A|_F^2 / D for Gaussian and Rademacher eps
    torch.manual_seed(2)
    A = torch.randn(4, 4)
    T = 0.5
    target = T * A.pow(2).sum() / 4
    x = torch.randn(20_000, 4) * 0.1
    for noise in ("gaussian", "rademacher"):
        est = _flow(A, T=T, trace="hutchinson", noise=noise, atol=1e-6, rtol=1e-6)(x).regularizers["jacobian"]
        stderr = est.std() / math.sqrt(len(est))
        assert abs(est.mean() - target) < 4 * stderr, (noise, est.mean().item(), target.item())
        assert est.std() > 0  # a genuine estimate, not the exact value


def test_regularizer_integrands_directly():
    f = torch.tensor([[3.0, 4.0]])
    vjp = torch.tensor([[1.0, -2.0]])
    assert KineticEnergy()(None, None, f, None, None).item() == pytest.approx(0.5 * 25 / 2)
    assert JacobianFrobenius()(None, None, f, None, vjp).item() == pytest.approx(5 / 2)
    with pytest.raises(ValueError):
        JacobianFrobenius()(None, None, f, None, None)


def test_rnode_weights():
    regs, weights = rnode_regularizers()
    assert [r.name for r in regs] == ["kinetic", "jacobian"] and weights == {"kinetic": 0.01, "jacobian": 0.01}
    regs, weights = rnode_regularizers(kinetic=0.5, jacobian=0.0)
    assert [r.name for r in regs] == ["kinetic"] and weights == {"kinetic": 0.5}
    assert rnode_regularizers(0, 0) == ([], {})
    with pytest.raises(ValueError):
        rnode_regularizers(kinetic=-1.0)


def test_no_regularizers_changes_nothing():
    torch.manual_seed(3)
    vf = ConcatSquashMLP(2, (16, 16))
    x = torch.randn(64, 2)
    plain = CNF(vf, T=0.5)
    regs, _ = rnode_regularizers(0.0, 0.0)
    same = CNF(vf, T=0.5, regularizers=regs)
    a, b = plain(x), same(x)
    torch.testing.assert_close(a.z, b.z)
    torch.testing.assert_close(a.delta_logp, b.delta_logp)
    assert plain.nfe_forward == same.nfe_forward and b.regularizers == {}


def test_regularizer_gradient_adjoint_matches_autograd():
    torch.manual_seed(4)
    vf = ConcatSquashMLP(2, (16, 16))
    x = torch.randn(32, 2)
    grads = {}
    for sensitivity in ("adjoint", "autograd"):
        cnf = CNF(vf, T=0.5, atol=1e-7, rtol=1e-7, sensitivity=sensitivity, regularizers=[KineticEnergy()])
        vf.zero_grad()
        cnf(x).regularizers["kinetic"].mean().backward()
        grads[sensitivity] = torch.cat([p.grad.reshape(-1) for p in vf.parameters() if p.grad is not None])
    torch.testing.assert_close(grads["adjoint"], grads["autograd"], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("sensitivity", ["adjoint", "autograd"])
@pytest.mark.parametrize("trace", ["exact", "hutchinson"])
def test_regularized_training_runs(sensitivity, trace):
    torch.manual_seed(5)
    regs, weights = rnode_regularizers(kinetic=1.0, jacobian=1.0)
    cnf = CNF(ConcatSquashMLP(2, (16, 16)), trace=trace, T=0.5, atol=1e-4, rtol=1e-4,
              sensitivity=sensitivity, regularizers=regs)
    history = fit(cnf, torch.randn(256, 2) * 2, steps=3, loss=flow_loss(weights), batch_size=64, progress=False)
    assert {"loss", "nll", "kinetic", "jacobian", "nfe_forward", "nfe_backward"} <= set(history.columns)
    assert torch.isfinite(torch.tensor(history[["loss", "kinetic", "jacobian"]].to_numpy())).all()
    expected = history.nll + history.kinetic + history.jacobian
    torch.testing.assert_close(torch.tensor(history.loss.to_numpy()), torch.tensor(expected.to_numpy()), rtol=1e-5, atol=1e-5)
    assert (history.nfe_backward > 0).all() == (sensitivity == "adjoint")


def test_kinetic_penalty_lowers_kinetic_energy():
    torch.manual_seed(6)
    regs, weights = rnode_regularizers(kinetic=10.0, jacobian=0.0)
    cnf = CNF(ConcatSquashMLP(2, (16, 16)), T=0.5, atol=1e-4, rtol=1e-4, regularizers=regs)
    history = fit(cnf, torch.randn(512, 2), steps=30, loss=flow_loss(weights), batch_size=128, lr=1e-2, progress=False)
    assert history.kinetic.iloc[-5:].mean() < 0.5 * history.kinetic.iloc[:5].mean()


def test_straightness_closed_forms():
    t = torch.linspace(0, 1, 2001)
    line = torch.stack([t, 2 * t], 1)[:, None]  # straight, constant speed
    arc = torch.stack([torch.cos(math.pi * t), torch.sin(math.pi * t)], 1)[:, None]  # half circle
    accelerating = torch.stack([t**2, 0 * t], 1)[:, None]  # straight, speed 2t
    assert straightness(line).item() == pytest.approx(1.0) and kinetic_ratio(line).item() == pytest.approx(1.0)
    assert straightness(arc).item() == pytest.approx(2 / math.pi, rel=1e-5)
    assert path_length(arc).item() == pytest.approx(math.pi, rel=1e-5)
    assert kinetic_ratio(arc).item() == pytest.approx(math.pi**2 / 4, rel=1e-4)  # T int |z'|^2 / |c|^2 = pi^2 / 4
    assert straightness(accelerating).item() == pytest.approx(1.0)
    assert kinetic_ratio(accelerating).item() == pytest.approx(4 / 3, rel=1e-4)  # int (2t)^2 dt = 4/3
    with pytest.raises(ValueError):
        straightness(torch.zeros(1, 5, 2))
