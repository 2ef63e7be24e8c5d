"""Neural ODE classifiers, the Euler ResNet and the nested-annuli data against closed forms."""
import pytest
import torch
from torch import nn

from cnflib.data.classification import best_threshold_accuracy, nested_annuli
from cnflib.models.node import ODEClassifier, ResNet, SavedTensorMeter, accuracy, classification_loss, gradient_cost
from cnflib.core.vector_fields import TimeConcatMLP
from cnflib.core.odes import BudgetedField, neural_ode, solve


class Linear(nn.Module):
    """f(t, x) = x A^T, whose flow is x expm(T A)^T."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = A

    def forward(self, t, x):
        return x @ self.A.T


A = torch.tensor([[-0.5, 1.0], [-1.0, -0.2]], dtype=torch.float64)


def test_resnet_is_euler_product_and_converges_at_first_order():
    x = torch.randn(5, 2, dtype=torch.float64)
    exact = x @ torch.linalg.matrix_exp(A).T
    errors = []
    for depth in (8, 16, 32, 64):
        out = ResNet(Linear(A), depth)(x)
        step = torch.eye(2, dtype=torch.float64) + A / depth
        assert torch.allclose(out, x @ torch.linalg.matrix_power(step, depth).T, atol=1e-12)
        errors.append((out - exact).abs().max().item())
    ratios = [a / b for a, b in zip(errors[:-1], errors[1:])]
    assert all(1.8 < r < 2.2 for r in ratios), ratios


def test_resnet_equals_torchdyn_euler_on_the_same_grid():
    torch.manual_seed(0)
    field = TimeConcatMLP(2, (16,)).double()
    x = torch.randn(7, 2, dtype=torch.float64)
    counted = BudgetedField(field)
    ode = neural_ode(counted, "euler", 1e-3, 1e-3, "autograd")
    states = ResNet(field, 10, T=2.0)(x, return_states=True)
    sol = solve(ode, counted, x, torch.linspace(0, 2.0, 11, dtype=torch.float64))
    assert states.shape == sol.shape == (11, 7, 2)
    assert torch.allclose(states, sol, atol=1e-12)
    with pytest.raises(ValueError):
        ResNet(field, 0)


def test_classifier_shapes_augmentation_and_bad_options():
    model = ODEClassifier(2, augment=3, hidden=(8,))
    x = torch.randn(6, 2)
    assert torch.equal(model.lift(x)[:, 2:], torch.zeros(6, 3))
    assert model(x).shape == (6,)
    assert model.trajectory(x, torch.linspace(0, 1, 4)).shape == (4, 6, 5)
    loss, metrics = classification_loss(model, (x, torch.ones(6)))
    assert loss.ndim == 0 and set(metrics) == {"bce", "accuracy"}
    assert 0.0 <= accuracy(model, x, torch.ones(6)) <= 1.0
    with pytest.raises(ValueError, match="valid"):
        ODEClassifier(2, solver="dopri")
    with pytest.raises(ValueError, match="valid"):
        ODEClassifier(2, sensitivity="backprop")
    with pytest.raises(ValueError):
        ODEClassifier(2, augment=-1)


def test_fixed_step_classifier_uses_its_steps():
    model = ODEClassifier(2, hidden=(8,), solver="rk4", steps=5)
    model(torch.randn(3, 2))
    assert model.nfe_forward == 4 * 5


def test_plain_1d_node_is_monotone_so_threshold_bound_holds():
    torch.manual_seed(1)
    model = ODEClassifier(1, hidden=(16, 16)).double()
    with torch.no_grad():
        for p in model.field.parameters():
            p.mul_(3.0)  # strongly nonlinear flow
        x = torch.linspace(-2, 2, 400, dtype=torch.float64)[:, None]
        z = model.features(x)[:, 0]
    assert (z[1:] > z[:-1]).all()  # the flow map of a 1-D ODE is increasing: trajectories never cross
    xs, ys = nested_annuli(200, 400, dim=1, generator=torch.Generator().manual_seed(0))
    assert accuracy(model.float(), xs, ys) <= best_threshold_accuracy(xs, ys) + 1e-9


def test_best_threshold_accuracy_closed_form():
    x = torch.tensor([-3.0, -2.0, -1.0, 0.0, 1.0, 2.0])
    assert best_threshold_accuracy(x, torch.tensor([1, 1, 0, 0, 1, 1])) == pytest.approx(4 / 6)
    assert best_threshold_accuracy(x, torch.tensor([0, 0, 0, 1, 1, 1])) == 1.0
    assert best_threshold_accuracy(x, torch.tensor([1, 1, 1, 0, 0, 0])) == 1.0


def test_nested_annuli_radii_labels_and_errors():
    x, y = nested_annuli(300, 600, dim=3, r1=0.5, r2=1.0, r3=1.5, generator=torch.Generator().manual_seed(0))
    r = x.norm(dim=1)
    assert x.shape == (900, 3) and y.shape == (900,) and y.sum() == 600
    assert (r[y == 0] <= 0.5 + 1e-6).all()
    assert ((r[y == 1] >= 1.0 - 1e-6) & (r[y == 1] <= 1.5 + 1e-6)).all()
    again, _ = nested_annuli(300, 600, dim=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(x, again)
    with pytest.raises(ValueError):
        nested_annuli(r1=1.0, r2=0.5)


def test_saved_tensor_meter_counts_what_autograd_saves_and_releases():
    w = torch.randn(1000, requires_grad=True)
    x = torch.randn(1000, requires_grad=True)
    with SavedTensorMeter() as meter:
        loss = (x * w).sum()  # mul saves both factors for the backward: 2 x 1000 float32
        assert meter.live == 8000
        loss.backward()
        del loss
    assert meter.peak == 8000 and meter.live == 0


def test_adjoint_and_autograd_gradients_agree():
    torch.manual_seed(0)
    x = torch.randn(64, 2, dtype=torch.float64)
    costs = {}
    for sensitivity in ("autograd", "adjoint"):
        torch.manual_seed(0)
        model = ODEClassifier(2, hidden=(16,), atol=1e-9, rtol=1e-9, sensitivity=sensitivity).double()
        costs[sensitivity] = gradient_cost(lambda: model(x).pow(2).mean(), model.parameters(), repeats=1)
        if sensitivity == "adjoint":
            assert model.nfe_backward > 0
    g1, g2 = costs["autograd"].gradient, costs["adjoint"].gradient
    assert ((g1 - g2).norm() / g1.norm()).item() < 1e-6
    assert costs["adjoint"].saved_bytes < costs["autograd"].saved_bytes
