"""Spiral generator (InfoCNF App. E), Latent ODE shapes, ELBO terms and gradients."""
from __future__ import annotations

import math

import pytest
import torch

from cnflib.data.timeseries import (A_MEAN, A_STD, B_MEAN, B_STD, make_spirals, spiral_paths,
                                    standardize_labels)
from cnflib.core.distributions import gaussian_kl, gaussian_log_likelihood
from cnflib.infocnf.latent_ode import PartitionedLatentODE, arm_labels
from cnflib.models.latent_ode import LatentODE, RecognitionRNN, elbo_loss, trajectory_mse


def _tiny(n: int = 40, seed: int = 0):
    return make_spirals(n, n_total=100, window=20, horizon=10, generator=torch.Generator().manual_seed(seed))


def test_spiral_equations():
    a, b = torch.tensor([1.1, 0.9]), torch.tensor([0.2, 0.3])
    t, paths = spiral_paths(a, b, torch.tensor([True, False]), n_total=7, t_max=6 * math.pi)
    assert t.shape == (7,) and paths.shape == (2, 7, 2)
    theta = 6 * math.pi + 1 - t  # clockwise: decreasing angle
    r = 1.1 + 0.2 * 50 / theta
    torch.testing.assert_close(paths[0], torch.stack([r * torch.cos(theta) - 5, r * torch.sin(theta)], 1))
    r = 0.9 + 0.3 * t
    torch.testing.assert_close(paths[1], torch.stack([r * torch.cos(t) + 5, r * torch.sin(t)], 1))


def test_spiral_directions_turn_as_labelled():
    _, paths = spiral_paths(torch.ones(2), torch.full((2,), 0.25), torch.tensor([True, False]), n_total=200)
    centred = paths - torch.tensor([[[-5.0, 0.0]], [[5.0, 0.0]]])
    d = centred[:, 1:] - centred[:, :-1]
    cross = centred[:, :-1, 0] * d[..., 1] - centred[:, :-1, 1] * d[..., 0]  # > 0: counter-clockwise
    assert (cross[0] < 0).all() and (cross[1] > 0).all()


def test_label_distribution_and_split():
    data = make_spirals(4000, n_total=100, window=20, horizon=10, test_fraction=0.25,
                        generator=torch.Generator().manual_seed(1))
    labels = torch.cat([data.train.labels, data.test.labels])
    assert len(data.train) == 3000 and len(data.test) == 1000
    assert abs(labels[:, 0].mean() - A_MEAN) < 0.01 and abs(labels[:, 0].std() - A_STD) < 0.005
    assert abs(labels[:, 1].mean() - B_MEAN) < 0.003 and abs(labels[:, 1].std() - B_STD) < 0.002
    assert (labels[:, 2] == 1).sum() == 2000 and (labels[:, 2].abs() == 1).all()  # exactly half each way
    codes = standardize_labels(labels)
    assert abs(codes[:, :2].mean()) < 0.05 and abs(codes[:, :2].std() - 1) < 0.05


def test_windows_noise_and_future_follow_the_path():
    data = make_spirals(300, n_total=100, window=20, horizon=10, noise_std=0.3, generator=torch.Generator().manual_seed(2))
    s = data.train
    assert s.observed.shape == s.truth.shape == (240, 20, 2) and s.future.shape == (240, 10, 2)
    assert s.start.min() >= 0 and s.start.max() <= 100 - 30
    noise = s.observed - s.truth
    assert abs(noise.std() - 0.3) < 0.01 and abs(noise.mean()) < 0.01
    _, paths = spiral_paths(s.labels[:, 0], s.labels[:, 1], s.labels[:, 2] < 0, n_total=100)
    i = 7
    torch.testing.assert_close(s.truth[i], paths[i, s.start[i]:s.start[i] + 20])
    torch.testing.assert_close(s.future[i], paths[i, s.start[i] + 20:s.start[i] + 30])
    dt = 6 * math.pi / 99
    torch.testing.assert_close(data.t_all, dt * torch.arange(30.0))


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="exceeds"):
        make_spirals(10, n_total=50, window=40, horizon=20)
    with pytest.raises(ValueError, match="unknown cell"):
        RecognitionRNN(cell="lstm")


def test_kl_and_log_likelihood_closed_forms():
    q_m, q_s = torch.tensor([[0.5, -1.0]]), torch.tensor([[2.0, 0.5]])
    p_m, p_s = torch.tensor([[0.0, 1.0]]), torch.tensor([[1.0, 2.0]])
    expected = sum(math.log(ps / qs) + (qs**2 + (qm - pm) ** 2) / (2 * ps**2) - 0.5
                   for qm, qs, pm, ps in zip([0.5, -1.0], [2.0, 0.5], [0.0, 1.0], [1.0, 2.0]))
    torch.testing.assert_close(gaussian_kl(q_m, q_s, p_m, p_s), torch.tensor([expected]))
    torch.testing.assert_close(gaussian_kl(p_m, p_s, p_m, p_s), torch.zeros(1))
    x, mean = torch.randn(3, 4, 2), torch.randn(3, 4, 2)
    ref = torch.distributions.Normal(mean, 0.3).log_prob(x).sum((1, 2))
    torch.testing.assert_close(gaussian_log_likelihood(x, mean, 0.3), ref)


def test_direction_accuracy_reads_the_heads_sign():
    torch.manual_seed(0)
    model = PartitionedLatentODE()
    observed = _tiny().train.observed[:8]
    labels = torch.ones(8, 3)
    labels[:3, 2] = -1.0
    with torch.no_grad():  # a head that always says "counter-clockwise": right on the 5 positive labels
        model.head.weight.zero_()
        model.head.bias.fill_(1.0)
    assert model.direction_accuracy(observed, labels) == pytest.approx(5 / 8)
    with torch.no_grad():
        model.head.bias.fill_(-1.0)
    assert model.direction_accuracy(observed, labels) == pytest.approx(3 / 8)
    assert model.direction_accuracy(observed, labels, column=0) == 0.0


@pytest.mark.parametrize("cls", [LatentODE, PartitionedLatentODE])
def test_shapes(cls):
    torch.manual_seed(0)
    data = _tiny()
    model = cls(cell="gru") if cls is LatentODE else cls()
    x = data.train.observed[:6]
    mean, std = model.encoder(x)
    assert mean.shape == std.shape == (6, 5) and (std > 0).all()
    out = model(x, data.t_all)
    assert out.x_mean.shape == (6, 30, 2) and out.z.shape == (6, 30, 5)
    assert model.dynamics.nfe_forward == 4 * 29  # rk4: one step between consecutive requested times
    metrics = trajectory_mse(model, data.test.observed, data.t_observed, data.test.truth, data.t_future,
                             data.test.future, batch_size=3)
    assert set(metrics) == {"recon_mse", "extrap_mse"} and all(math.isfinite(v) for v in metrics.values())


def test_partitioned_prior():
    torch.manual_seed(0)
    model = PartitionedLatentODE()
    y = standardize_labels(_tiny().train.labels[:4])
    mean, std = model.prior(y, 4)
    assert mean.shape == std.shape == (4, 5)
    torch.testing.assert_close(mean[:, 3:], torch.zeros(4, 2))
    torch.testing.assert_close(std[:, 3:], torch.ones(4, 2))
    assert not torch.allclose(mean[:, :3], mean[:1, :3].expand(4, 3))  # the code's prior depends on y
    assert model.predict_labels(torch.randn(4, 5)).shape == (4, 3)
    with pytest.raises(ValueError, match="labels"):
        model.prior(None, 4)


@pytest.mark.parametrize("cls", [LatentODE, PartitionedLatentODE])
def test_elbo_finite_and_gradients_reach_every_parameter(cls):
    torch.manual_seed(0)
    data = _tiny()
    model = cls()
    batch = (data.train.observed[:8], standardize_labels(data.train.labels[:8]))
    loss, metrics = elbo_loss(data.t_observed)(model, batch)
    assert torch.isfinite(loss) and math.isfinite(metrics["neg_elbo"]) and metrics["kl"] >= 0
    assert ("head_mse" in metrics) == (cls is PartitionedLatentODE)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_head_reads_the_posterior_mean():
    # the head's error is a function of q(z_0 | x)'s mean: the sampling noise of z_0 does not enter it
    data = _tiny()
    model = PartitionedLatentODE()
    x, y = data.train.observed[:8], standardize_labels(data.train.labels[:8])
    loss = elbo_loss(data.t_observed, head_weight=1.0)
    (_, first), (_, second) = loss(model, (x, y)), loss(model, (x, y))
    assert first["neg_elbo"] != second["neg_elbo"]  # a new z_0 sample
    with torch.no_grad():
        q_mean, _ = model.encoder(x)
        expected = float(((model.head(q_mean[:, :3]) - y) ** 2).sum(1).mean())
    assert first["head_mse"] == pytest.approx(expected) and second["head_mse"] == pytest.approx(expected)


def test_shuffled_arm_keeps_the_label_marginal():
    labels = standardize_labels(_tiny(200).train.labels)
    shuffled = arm_labels("shuffled", labels, seed=3)
    assert not torch.equal(shuffled, labels)
    for j in range(labels.shape[1]):  # a permutation of the rows: every column's values are kept
        torch.testing.assert_close(shuffled[:, j].sort().values, labels[:, j].sort().values)
    assert torch.equal(arm_labels("partitioned", labels), labels)
    with pytest.raises(ValueError, match="baseline"):
        arm_labels("shufled", labels)


def test_shared_placement_mirrors_and_rotates():
    a, b = torch.tensor([1.0, 1.0]), torch.tensor([0.25, 0.25])
    t, paths = spiral_paths(a, b, torch.tensor([True, False]), n_total=50, placement="shared")
    torch.testing.assert_close(paths[0], paths[1] * torch.tensor([1.0, -1.0]))  # clockwise = mirror image
    torch.testing.assert_close(paths.norm(dim=-1), (1.0 + 0.25 * t).expand(2, -1))  # one radius law, centre 0
    rot = torch.tensor([0.7, -1.3])
    _, turned = spiral_paths(a, b, torch.tensor([True, False]), n_total=50, placement="shared", rotation=rot)
    c, s = torch.cos(rot)[:, None], torch.sin(rot)[:, None]
    torch.testing.assert_close(turned, torch.stack([c * paths[..., 0] - s * paths[..., 1],
                                                    s * paths[..., 0] + c * paths[..., 1]], -1))
    with pytest.raises(ValueError, match="placement"):
        spiral_paths(a, b, torch.tensor([True, False]), placement="elsewhere")


def test_shared_placement_hides_direction_in_position():
    """Under "shared" the first point's radius and angle have the same law for both directions
    (two-sample means agree within noise), while "paper" separates them by x alone."""
    for placement, separated in [("paper", True), ("shared", False)]:
        data = make_spirals(4000, n_total=100, window=20, horizon=10, noise_std=0.0, placement=placement,
                            generator=torch.Generator().manual_seed(3))
        first, cw = data.train.truth[:, 0], data.train.labels[:, 2] < 0
        gap = (first[cw, 0].mean() - first[~cw, 0].mean()).abs()
        assert bool(gap > 5.0) == separated
        if not separated:
            r = first.norm(dim=1)
            assert (r[cw].mean() - r[~cw].mean()).abs() < 0.1 and gap < 0.2
            assert (first[cw, 1].mean() - first[~cw, 1].mean()).abs() < 0.2
