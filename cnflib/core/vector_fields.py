"""Time-dependent vector fields ``f(t, z)`` for Neural ODEs and CNFs."""
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


def make_activation(name: str) -> nn.Module:
    """A fresh activation module from its name (see ``ACTIVATIONS``)."""
    return ACTIVATIONS[check_choice("activation", name, ACTIVATIONS)]()


def _time_column(t: Tensor, like: Tensor) -> Tensor:
    """Scalar time (shape [] or [1]) as a [1, 1] tensor of ``like``'s dtype and device."""
    return torch.as_tensor(t).reshape(1, 1).to(like)


class ConcatSquashLinear(nn.Module):
    """FFJORD's time-conditioned layer: ``(W z + b) * sigmoid(g(t)) + h(t)``. z: [n, d_in] -> [n, d_out]."""

    def __init__(self, d_in: int, d_out: int) -> None:
        super().__init__()
        self.linear = nn.Linear(d_in, d_out)
        self.gate = nn.Linear(1, d_out)
        self.shift = nn.Linear(1, d_out, bias=False)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        tt = _time_column(t, z)
        return self.linear(z) * torch.sigmoid(self.gate(tt)) + self.shift(tt)


class ConcatSquashMLP(nn.Module):
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

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        for layer, act in zip(self.layers[:-1], self.activations):
            z = act(layer(t, z))
        return self.layers[-1](t, z)


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
            z = torch.cat([z, _time_column(t, z).expand(z.shape[0], 1)], 1)
        return self.net(z)
