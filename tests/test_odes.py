"""cnflib.core.odes: explicit torchdyn settings, solver order, NFE counters and the step budget."""
import math

import pytest
import torch
from torch import nn

from cnflib import StepBudgetExceeded
from cnflib.core.odes import BudgetedField, neural_ode, solve


class TimeField(nn.Module):
    """dx/dt = cos(t) x: x(T) = x(0) exp(sin T), a time-dependent field with a closed form."""

    def forward(self, t, x):
        return torch.cos(t) * x


@pytest.mark.parametrize("solver, order, steps", [("euler", 1, 64), ("midpoint", 2, 64), ("rk4", 4, 8)])
def test_fixed_step_solvers_reach_their_order_on_a_time_dependent_field(solver, order, steps):
    """torchdyn's own rk4 is first order here (wrong stage times); cnflib's is fourth order."""
    x0 = torch.ones(1, 1, dtype=torch.float64)
    exact = math.exp(math.sin(2.0))
    errors = []
    for steps in (steps, 2 * steps):
        field = BudgetedField(TimeField())
        ode = neural_ode(field, solver=solver, atol=1e-3, rtol=1e-3, sensitivity="autograd")
        end = solve(ode, field, x0, torch.linspace(0, 2.0, steps + 1, dtype=torch.float64))[-1]
        errors.append(abs(end.item() - exact))
    assert math.log2(errors[0] / errors[1]) == pytest.approx(order, abs=0.35)


def test_adaptive_solve_counts_forward_and_adjoint_evaluations(linear_field):
    field = BudgetedField(linear_field(torch.randn(2, 2)))
    ode = neural_ode(field, solver="dopri5", atol=1e-6, rtol=1e-6, sensitivity="adjoint")
    end = solve(ode, field, torch.randn(4, 2), torch.linspace(0, 1, 2))[-1]
    assert field.nfe_forward > 0 and field.nfe_backward == 0
    end.sum().backward()
    assert field.nfe_backward > 0
    assert field.total_forward == field.nfe_forward


def test_budget_raises_on_a_stiff_solve(linear_field):
    field = BudgetedField(linear_field(torch.tensor([[-5000.0, 0.0], [0.0, 1.0]])), max_nfe=20)
    ode = neural_ode(field, solver="dopri5", atol=1e-8, rtol=1e-8, sensitivity="autograd")
    with pytest.raises(StepBudgetExceeded, match="forward ODE solve exceeded its budget of 20"):
        solve(ode, field, torch.randn(2, 2), torch.linspace(0, 1, 2))


@pytest.mark.parametrize("kwargs", [{"solver": "rk45"}, {"sensitivity": "backprop"}])
def test_unknown_settings_raise(kwargs):
    with pytest.raises(ValueError, match="valid: "):
        neural_ode(nn.Linear(2, 2), **kwargs)


def test_float64_adaptive_solves_are_not_limited_by_float32_coefficients():
    field = BudgetedField(TimeField())
    ode = neural_ode(field, solver="dopri5", atol=1e-12, rtol=1e-12, sensitivity="autograd")
    end = solve(ode, field, torch.ones(1, 1, dtype=torch.float64), torch.tensor([0.0, 2.0], dtype=torch.float64))[-1]
    assert abs(end.item() - math.exp(math.sin(2.0))) < 1e-8  # float32 coefficients stop at 5e-8
