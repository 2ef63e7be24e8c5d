"""Glow layers: inverses, and log-dets against the brute-force log|det J| of the Jacobian."""
import pytest
import torch
from torch.autograd.functional import jacobian

from cnflib.models.glow import ActNorm, AffineCoupling, InvConv1x1, Split, Squeeze, glow

SHAPE = (4, 2, 2)


def _randomize(layer: torch.nn.Module) -> torch.nn.Module:
    """Move every parameter away from its (often identity) initialization."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=generator, dtype=p.dtype))
    return layer


def _layers():
    actnorm = ActNorm(SHAPE)
    actnorm.initialized.fill_(True)
    return {
        "actnorm": actnorm,
        "invconv": InvConv1x1(SHAPE, torch.Generator().manual_seed(0)),
        "coupling": AffineCoupling(SHAPE, hidden=8),
        "squeeze": Squeeze(SHAPE),
        "split": Split(SHAPE),
    }


@pytest.fixture(params=list(_layers()))
def layer(request):
    return _randomize(_layers()[request.param]).double()


def test_inverse_round_trip(layer):
    x = torch.randn(5, 16 + 3, dtype=torch.float64)  # 3 trailing entries stand for factored-out halves
    y = layer(x).z
    assert torch.allclose(layer.inverse(y), x, atol=1e-10)
    assert torch.equal(y[:, 16:], x[:, 16:])


def test_log_det_equals_brute_force(layer):
    x = torch.randn(3, 16 + 3, dtype=torch.float64)
    log_det = layer(x).delta_logp
    for i in range(len(x)):
        jac = jacobian(lambda v: layer(v[None]).z[0], x[i])
        assert torch.allclose(log_det[i], torch.linalg.slogdet(jac)[1], atol=1e-9)


def test_actnorm_data_init_standardizes_channels():
    layer = ActNorm(SHAPE)
    x = 3 + 2 * torch.randn(64, 16)
    y = layer(x).z
    h = y.reshape(64, *SHAPE)
    assert torch.allclose(h.mean((0, 2, 3)), torch.zeros(4), atol=1e-5)
    assert torch.allclose(h.std((0, 2, 3)), torch.ones(4), atol=1e-4)


def test_invconv_lu_weight_is_the_initial_rotation():
    layer = InvConv1x1(SHAPE, torch.Generator().manual_seed(0))
    w = layer.weight()
    assert torch.allclose(w @ w.T, torch.eye(4), atol=1e-5)
    assert torch.allclose(layer.log_s.sum(), torch.zeros(()), atol=1e-5)  # |det W| = 1


def test_glow_model_round_trip_and_log_det():
    flow = _randomize(glow((1, 4, 4), blocks=2, steps=1, hidden=4, seed=0)).double()
    x = torch.randn(2, 1, 4, 4, dtype=torch.float64)
    out = flow(x)
    assert torch.allclose(flow.inverse(out.z), x.flatten(1), atol=1e-9)
    jac = jacobian(lambda v: flow(v.reshape(1, 1, 4, 4)).z[0], x[0].flatten())
    assert torch.allclose(out.delta_logp[0], torch.linalg.slogdet(jac)[1], atol=1e-8)
    assert flow.sample(3).shape == (3, 1, 4, 4)


def test_glow_rejects_indivisible_shape():
    with pytest.raises(ValueError, match="divisible"):
        glow((1, 6, 6), blocks=2, steps=1, hidden=4)
