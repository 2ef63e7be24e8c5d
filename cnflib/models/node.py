"""Neural ODE classifiers and the residual network they are the limit of.

* :class:`ResNet`: ``depth`` residual blocks ``x <- x + h f(t_k, x)`` sharing one time-dependent
  field ``f`` (He et al. 2016). Each block is an explicit Euler step of ``dx/dt = f(t, x)`` with
  step ``h = T / depth``, so the network converges to the ODE's flow as depth grows (Chen et al.
  2018, Sec. 1).
* :class:`ODEClassifier`: flow the input by a Neural ODE (torchdyn via :mod:`cnflib.core.odes`), read
  out a logit linearly. With ``augment = p > 0`` the input is padded with ``p`` zeros first:
  the augmented Neural ODE (ANODE) of Dupont et al. (2019), Eq. 5.
* :func:`classification_loss` for :func:`cnflib.core.train.fit`, and :func:`gradient_cost` with
  :class:`SavedTensorMeter` to compare the adjoint with backpropagation through the solver.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnflib.core.vector_fields import TimeConcatMLP
from cnflib.core.odes import ADAPTIVE_SOLVERS, BudgetedField, neural_ode, solve


class ResNet(nn.Module):
    """A residual network whose blocks share one time-dependent field: an Euler discretization.

    ``x_{k+1} = x_k + h f(t_k, x_k)`` with ``h = T / depth`` and ``t_k = k h``.

    Arguments:
        vector_field: ``f(t, x)``, x: [n, d] -> [n, d] (e.g. :class:`TimeConcatMLP`).
        depth: number of residual blocks.
        T: total integration time represented by the network.
    """

    def __init__(self, vector_field: nn.Module, depth: int, T: float = 1.0) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self.field, self.depth, self.T = vector_field, int(depth), float(T)

    def forward(self, x: Tensor, return_states: bool = False) -> Tensor:
        """x: [n, d] -> output [n, d], or every block's state [depth + 1, n, d]."""
        h = self.T / self.depth
        states = [x]
        for k in range(self.depth):
            t = torch.tensor(k * h, dtype=x.dtype)
            x = x + h * self.field(t, x)
            states.append(x)
        return torch.stack(states) if return_states else x


class ODEClassifier(nn.Module):
    """Binary classifier ``logit(x) = w^T phi_T([x, 0_p]) + b``, phi_T the flow of a Neural ODE.

    Arguments:
        dim: input dimension d.
        augment: number p of zero dimensions appended (0: plain Neural ODE; >0: ANODE).
        hidden, activation, time_dependent: the :class:`TimeConcatMLP` field on R^(d+p).
        solver, atol, rtol, sensitivity: passed to :func:`cnflib.core.odes.neural_ode`.
        steps: number of steps of a fixed-step solver (ignored by adaptive ones).
        T: integration time.
        max_nfe: step budget of one solve (raises :class:`cnflib.core.odes.StepBudgetExceeded`).
    """

    def __init__(self, dim: int = 2, augment: int = 0, hidden: Sequence[int] = (32, 32), activation: str = "tanh",
                 time_dependent: bool = True, solver: str = "dopri5", atol: float = 1e-3, rtol: float = 1e-3,
                 sensitivity: str = "autograd", steps: int = 20, T: float = 1.0, max_nfe: int = 5_000) -> None:
        super().__init__()
        if augment < 0:
            raise ValueError(f"augment must be >= 0, got {augment}")
        self.dim, self.augment, self.T = dim, augment, float(T)
        self.field = BudgetedField(TimeConcatMLP(dim + augment, hidden, activation, time_dependent), max_nfe)
        self.ode = neural_ode(self.field, solver, atol, rtol, sensitivity)
        self.steps = 1 if solver in ADAPTIVE_SOLVERS else int(steps)
        self.readout = nn.Linear(dim + augment, 1)

    @property
    def nfe_forward(self) -> int:
        return self.field.nfe_forward

    @property
    def nfe_backward(self) -> int:
        return self.field.nfe_backward

    def lift(self, x: Tensor) -> Tensor:
        """Append the augmented zeros: [n, d] -> [n, d + p]."""
        return torch.cat([x, x.new_zeros(x.shape[0], self.augment)], 1)

    def trajectory(self, x: Tensor, t_span: Optional[Tensor] = None) -> Tensor:
        """States of the lifted input along the flow: [n, d] -> [len(t_span), n, d + p].

        ``t_span`` defaults to the solver's own grid from 0 to T.
        """
        if t_span is None:
            t_span = torch.linspace(0.0, self.T, self.steps + 1)
        return solve(self.ode, self.field, self.lift(x), t_span)

    def features(self, x: Tensor) -> Tensor:
        """phi_T of the lifted input: [n, d] -> [n, d + p]."""
        return self.trajectory(x)[-1]

    def forward(self, x: Tensor) -> Tensor:
        """Logits of class 1: [n, d] -> [n]."""
        return self.readout(self.features(x)).squeeze(1)


def classification_loss(model: nn.Module, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
    """Mean binary cross-entropy of ``model(x)`` (logits [n]) against labels y [n] in {0, 1}.

    The loss function for :func:`cnflib.core.train.fit`; metrics: ``bce`` and ``accuracy``.
    """
    x, y = batch
    logits = model(x)
    loss = F.binary_cross_entropy_with_logits(logits, y)
    return loss, {"bce": loss.item(), "accuracy": ((logits > 0).float() == y).float().mean().item()}


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of points [n, d] whose predicted class (logit > 0) equals the label y [n]."""
    return ((model(x) > 0).float() == y).float().mean().item()


class _Saved:
    """A tensor held by an autograd graph; its finalizer tells the meter when the graph drops it."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


class SavedTensorMeter:
    """Live and peak bytes of the tensors autograd keeps for the backward pass (a context manager).

    Uses ``torch.autograd.graph.saved_tensors_hooks``: every tensor an operation saves for its
    backward is counted (once per storage) until the graph releases it. This is the memory that
    backpropagating through a solver spends on every step (it grows with the number of function
    evaluations) and that the adjoint method avoids. Memory outside graphs (parameters, the
    current state) is not counted; it is the same for both methods.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0
        self._refs: dict[int, int] = {}
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, self._unpack)

    def __enter__(self) -> "SavedTensorMeter":
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: Tensor) -> _Saved:
        storage = tensor.untyped_storage()
        key = storage.data_ptr()
        if self._refs.get(key, 0) == 0:
            self.live += storage.nbytes()
            self.peak = max(self.peak, self.live)
        self._refs[key] = self._refs.get(key, 0) + 1
        saved = _Saved(tensor)
        weakref.finalize(saved, self._release, key, storage.nbytes())
        return saved

    @staticmethod
    def _unpack(saved: _Saved) -> Tensor:
        return saved.tensor

    def _release(self, key: int, nbytes: int) -> None:
        self._refs[key] -= 1
        if self._refs[key] == 0:
            del self._refs[key]
            self.live -= nbytes


@dataclass
class GradientCost:
    """One gradient's value and cost: ``gradient`` [n_params] (flattened), ``seconds`` (median
    wall time of forward + backward), ``saved_bytes`` (peak bytes held by autograd graphs)."""

    gradient: Tensor
    seconds: float
    saved_bytes: int


def gradient_cost(loss_fn: Callable[[], Tensor], parameters: Iterable[nn.Parameter], repeats: int = 3) -> GradientCost:
    """Measure ``d loss_fn() / d parameters``: its value, its time and its graph memory.

    The first call runs under a :class:`SavedTensorMeter` (memory, gradient); ``repeats`` further
    calls without it are timed and their median reported.
    """
    parameters = list(parameters)

    def gradient() -> Tensor:
        grads = torch.autograd.grad(loss_fn(), parameters)
        return torch.cat([g.reshape(-1) for g in grads])

    with SavedTensorMeter() as meter:
        value = gradient()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        gradient()
        times.append(time.perf_counter() - start)
    return GradientCost(value.detach(), sorted(times)[len(times) // 2], meter.peak)
