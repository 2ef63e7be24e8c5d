"""Thin helpers over torchdyn's ``NeuralODE``: explicit settings, NFE counters, a step budget.

torchdyn 1.0.6 pitfalls handled here (see docs/references.md):

* its ``NeuralODE`` defaults (tsit5, atol=rtol=1e-3) differ from its docstring, so
  :func:`neural_ode` passes every setting explicitly;
* its adaptive loop is a bare ``while t < T`` with no step cap, so :class:`CountingField`
  raises :class:`StepBudgetExceeded` once a solve exceeds ``max_nfe`` evaluations;
* its ``vf.nfe`` counter never resets, so we keep our own forward/backward counters;
* its ``rk4`` evaluates the stages k2, k3, k4 at t, t + h/2, t + h/2 instead of t + h/2, t + h/2,
  t + h (it indexes the nodes c = [0, 1/2, 1/2, 1] from the first), which makes it first order
  for time-dependent fields: :func:`neural_ode` gives it the shifted nodes instead;
* its solvers' coefficients default to float32, which limits float64 solves to ~1e-8:
  :func:`neural_ode` builds them in float64 (cast to the state's dtype at each solve).
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor, nn
from torchdyn.core import NeuralODE
from torchdyn.numerics.solvers.ode import RungeKutta4, str_to_solver

from cnflib.core._validation import check_choice

SOLVERS: tuple[str, ...] = ("dopri5", "tsit5", "euler", "midpoint", "rk4")
ADAPTIVE_SOLVERS: tuple[str, ...] = ("dopri5", "tsit5")
SENSITIVITIES: tuple[str, ...] = ("adjoint", "autograd", "interpolated_adjoint")


class StepBudgetExceeded(RuntimeError):
    """An ODE solve needed more function evaluations than its budget (stiff dynamics or NaNs)."""


class CountingField(nn.Module):
    """Base class for vector fields that count evaluations per solve and enforce a budget.

    Subclasses call :meth:`tick` once per evaluation. A solve is opened with
    :meth:`start_solve` (phase "forward"); calls after :meth:`end_forward` count as the
    backward (adjoint) solve. ``nfe_forward`` / ``nfe_backward`` hold the counts of the
    latest solve; ``total_forward`` / ``total_backward`` accumulate over the object's life.
    """

    def __init__(self, max_nfe: int = 10_000) -> None:
        super().__init__()
        self.max_nfe = int(max_nfe)
        self.nfe_forward = 0
        self.nfe_backward = 0
        self.total_forward = 0
        self.total_backward = 0
        self._phase = "forward"

    def start_solve(self) -> None:
        self._phase, self.nfe_forward = "forward", 0

    def end_forward(self) -> None:
        self._phase, self.nfe_backward = "backward", 0

    def tick(self) -> None:
        if self._phase == "forward":
            self.nfe_forward += 1
            self.total_forward += 1
            count = self.nfe_forward
        else:
            self.nfe_backward += 1
            self.total_backward += 1
            count = self.nfe_backward
        if count > self.max_nfe:
            raise StepBudgetExceeded(
                f"the {self._phase} ODE solve exceeded its budget of {self.max_nfe} function "
                "evaluations: the dynamics are stiff or not finite (NaN). Loosen the tolerances, "
                "use a fixed-step solver, regularize the dynamics, or raise max_nfe."
            )


class BudgetedField(CountingField):
    """Wrap a plain vector field ``f(t, x) -> dx/dt`` with counters and a step budget."""

    def __init__(self, vector_field: nn.Module, max_nfe: int = 10_000) -> None:
        super().__init__(max_nfe)
        self.field = vector_field

    def forward(self, t: Tensor, x: Tensor, args: Optional[dict] = None) -> Tensor:
        self.tick()
        return self.field(t, x)


def rk4_solver() -> RungeKutta4:
    """torchdyn's classical RK4 with the stage times its ``step`` expects (order 4 for f(t, x))."""
    solver = RungeKutta4(torch.float64)  # exact coefficients; cast to the state's dtype per solve
    _, a, b_sol, b_err = solver.tableau
    solver.tableau = (torch.tensor([0.5, 0.5, 1.0, 1.0], dtype=torch.float64), a, b_sol, b_err)  # step reads c[0..2]
    return solver


def neural_ode(
    vector_field: nn.Module,
    solver: str = "dopri5",
    atol: float = 1e-5,
    rtol: float = 1e-5,
    sensitivity: str = "adjoint",
) -> NeuralODE:
    """A torchdyn ``NeuralODE`` with every setting passed explicitly.

    The adjoint solve uses the same solver and tolerances as the forward solve. Fixed-step
    solvers ignore the tolerances (torchdyn warns on every solve unless they are its defaults).
    """
    check_choice("solver", solver, SOLVERS)
    check_choice("sensitivity", sensitivity, SENSITIVITIES)
    if solver not in ADAPTIVE_SOLVERS:
        atol, rtol = 1e-3, 1e-3
    # float64 coefficients (torchdyn's default float32 ones put a ~1e-8 floor under float64 solves)
    stepper = rk4_solver() if solver == "rk4" else str_to_solver(solver, torch.float64)
    return NeuralODE(
        vector_field,
        solver=stepper,
        atol=atol,
        rtol=rtol,
        sensitivity=sensitivity,
        solver_adjoint=None,  # None: the adjoint uses the forward solver
        atol_adjoint=atol,
        rtol_adjoint=rtol,
        return_t_eval=True,
    )


def solve(ode: NeuralODE, field: CountingField, x: Tensor, t_span: Tensor) -> Tensor:
    """Solve ``ode`` from ``x`` over ``t_span``: Tensor[n, ...] -> Tensor[len(t_span), n, ...].

    Opens a counted solve on ``field`` (the ODE's vector field); evaluations after it returns,
    i.e. those of an adjoint gradient, count as its backward solve. Non-finite results raise.
    """
    field.start_solve()
    _, sol = ode(x, t_span.to(x))
    field.end_forward()
    if not torch.isfinite(sol[-1]).all():
        raise FloatingPointError("the ODE solution is not finite (NaN or inf): lower the learning rate or tolerances")
    return sol
