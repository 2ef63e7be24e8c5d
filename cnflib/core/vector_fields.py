"""Time-dependent vector fields ``f(t, z)`` for Neural ODEs and CNFs.

Fields built of :class:`ConcatSquashLinear` layers also have ``jvp(t, z, v)``: the field and its
Jacobian-vector products ``(df/dz) v`` for ``k`` tangents at once, carried through the layers in
the same pass (forward-mode differentiation written out: a layer maps a tangent by its weight
times its gate, an activation scales it by its derivative). A CNF takes its divergence from it
instead of from backward passes (:class:`cnflib.core.cnf.CNFDynamics`): the same numbers, and
a graph of first derivatives only, so that the adjoint needs no double backward.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import Tensor, nn

from cnflib.core._validation import check_choice

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "tanh": nn.Tanh,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "relu": nn.ReLU,
    "elu": nn.ELU,
    "swish": nn.SiLU,
}

# sigma'(x) * v for each activation, from its input x, output y and tangents v [k, n, ...]
# (the formulas of torch's backward; softplus is linear above its threshold, where sigmoid(beta x)
# rounds to 1 in float32)
TANGENTS: dict[type, Callable[[nn.Module, Tensor, Tensor, Tensor], Tensor]] = {
    nn.Tanh: lambda act, x, y, v: torch.addcmul(v, v, y.square(), value=-1.0),
    nn.Softplus: lambda act, x, y, v: torch.sigmoid(x if act.beta == 1 else act.beta * x) * v,
    nn.Sigmoid: lambda act, x, y, v: (y - y.square()) * v,
    nn.ReLU: lambda act, x, y, v: (x > 0).to(x) * v,
    nn.ELU: lambda act, x, y, v: torch.where(x > 0, torch.ones_like(x), y + act.alpha) * v,
    nn.SiLU: lambda act, x, y, v: torch.sigmoid(x) * (1 + x * (1 - torch.sigmoid(x))) * v,
}


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its name (see ``ACTIVATIONS``)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


def activation_jvp(activation: nn.Module, x: Tensor, y: Tensor, v: Tensor) -> Tensor:
    """Tangents through an elementwise activation ``y = sigma(x)``: ``sigma'(x) * v``.
    x, y: [n, ...]; v: [k, n, ...] -> [k, n, ...]."""
    tangent = TANGENTS.get(type(activation))
    if tangent is None:
        known = sorted(c.__name__ for c in TANGENTS)
        raise ValueError(f"no derivative known for the activation {type(activation).__name__}; known: {known}")
    return tangent(activation, x, y, v)


def time_column(t: Tensor, like: Tensor) -> Tensor:
    """Time as a column of ``like``'s dtype and device: a scalar (shape [] or [1]) -> [1, 1] (one time
    for the whole batch, as in an ODE solve); one time per sample (shape [n] or [n, 1]) -> [n, 1]
    (as flow matching evaluates the field, see :mod:`cnflib.flowmatching`)."""
    t = torch.as_tensor(t)
    return t.reshape(1, 1).to(like) if t.numel() == 1 else t.reshape(-1, 1).to(like)


class ConcatSquashLinear(nn.Module):
    """FFJORD's time-conditioned layer: ``(W z + b) * sigmoid(g(t)) + h(t)``. z: [n, d_in] -> [n, d_out]."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(1, d_out)
        self.shift = nn.Linear(1, d_out, bias=False)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.conditioned(time_column(t, z), z)

    def conditioned(self, tt: Tensor, z: Tensor) -> Tensor:
        """The layer at the time column ``tt`` [1, 1] (made once per evaluation of a whole field)."""
        return torch.addcmul(self.shift(tt), self.linear(z), torch.sigmoid(self.gate(tt)))

    def jvp(self, tt: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The layer and its tangents: z [n, d_in], v [k, n, d_in] -> ([n, d_out], [k, n, d_out])."""
        gate = torch.sigmoid(self.gate(tt))
        out = torch.addcmul(self.shift(tt), self.linear(z), gate)  # calling linear refreshes a pruned weight (its hook)
        return out, torch.matmul(v, self.linear.weight.T) * gate


class ConcatSquashStack(nn.Module):
    """Concat-squash layers (``self.layers``, each with ``conditioned(tt, z)`` and ``jvp(tt, z, v)``)
    with an activation between consecutive ones (``self.activations``): the field and its
    forward-mode tangents in one pass. Subclasses build the layers (linear or convolutional)."""

    layers: nn.ModuleList
    activations: nn.ModuleList

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        tt = time_column(t, z)
        for layer, act in zip(self.layers[:-1], self.activations):
            z = act(layer.conditioned(tt, z))
        return self.layers[-1].conditioned(tt, z)

    def jvp(self, t: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """``f(t, z)`` and ``(df/dz) v`` for ``k`` tangents: z [n, *shape], v [k, n, *shape] -> ([n, *shape], [k, n, *shape])."""
        tt = time_column(t, z)
        for layer, act in zip(self.layers[:-1], self.activations):
            x, v = layer.jvp(tt, z, v)
            z = act(x)
            v = activation_jvp(act, x, z, v)
        return self.layers[-1].jvp(tt, z, v)


class ConcatSquashMLP(ConcatSquashStack):
    """An MLP of :class:`ConcatSquashLinear` layers: ``f(t, z)``, z: [n, dim] -> [n, dim].

    Arguments:
        dim: state dimension.
        hidden: widths of the hidden layers (FFJORD's toy default 64-64-64).
        activation: name in ``ACTIVATIONS`` (FFJORD toy: tanh).
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh") -> None:
        super().__init__()
        self.dim = dim
        widths = [dim, *hidden, dim]
        self.layers = nn.ModuleList(ConcatSquashLinear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activations = nn.ModuleList(make_activation(activation) for _ in hidden)



class TimeConcatMLP(nn.Module):
    """A plain MLP on ``[z, t]``: the simplest time-dependent field. z: [n, dim] -> [n, dim]."""

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), activation: str = "tanh",
                 time_dependent: bool = True) -> None:
        super().__init__()
        self.dim, self.time_dependent = dim, time_dependent
        widths = [dim + int(time_dependent), *hidden]
        blocks: list[nn.Module] = []
        for a, b in zip(widths[:-1], widths[1:]):
            blocks += [nn.Linear(a, b), make_activation(activation)]
        self.net = nn.Sequential(*blocks, nn.Linear(widths[-1], dim))

    def forward(self, t: Optional[Tensor], z: Tensor) -> Tensor:
        if self.time_dependent:
            z = torch.cat([z, time_column(t, z).expand(z.shape[0], 1)], 1)
        return self.net(z)
