"""Glow (Kingma & Dhariwal 2018) as a flat sequence of invertible layers, and the generic
:class:`FlowSequence` that also holds stacked CNF blocks (:mod:`cnflib.models.stacked_cnf`).

Every layer maps a flat state ``x [n, D]`` to a :class:`~cnflib.core.flow.FlowOutput`
``(z = y [n, D], delta_logp = log|det dy/dx| [n])`` and has ``inverse(y) -> x``. A Glow layer transforms only the first
``prod(shape)`` entries of the state (its *active* part, viewed as ``[n, C, H, W]``); the rest are
the halves factored out by earlier multi-scale splits, which pass through unchanged to the
base distribution. Flattening is channel-major, so the first ``C/2`` channels of an active
part are the first half of its entries: a split only shrinks the active part of later layers.

Layers (Glow Sec. 3): :class:`ActNorm` (data-dependent init), :class:`InvConv1x1` (LU-parameterized,
Eq. 10), :class:`AffineCoupling` (Table 1), :class:`Squeeze` and :class:`Split` (the multi-scale
split with Glow's learned prior written as an affine layer, so that the base stays N(0, I)).
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from cnflib.core.distributions import StandardNormal
from cnflib.core.flow import FlowOutput
from cnflib.core.transforms import squeeze, unsqueeze

Shape = tuple[int, int, int]


class ActiveLayer(nn.Module):
    """Base class: applies :meth:`transform` to the active part ``[n, *shape]`` of a flat state [n, D]."""

    def __init__(self, shape: Shape) -> None:
        super().__init__()
        self.shape = tuple(shape)
        self.size = math.prod(self.shape)

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        """h: [n, *shape] -> (y [n, *], log_det [n]); y has ``size`` entries per sample."""
        raise NotImplementedError

    def untransform(self, y: Tensor) -> Tensor:
        """Inverse of :meth:`transform` on the flat active part: y [n, size] -> h [n, *shape]."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> FlowOutput:
        """x: [n, D] -> FlowOutput(y [n, D], log_det [n])."""
        n = x.shape[0]
        y, log_det = self.transform(x[:, : self.size].reshape(n, *self.shape))
        return FlowOutput(torch.cat([y.reshape(n, -1), x[:, self.size:]], 1), log_det)

    def inverse(self, y: Tensor) -> Tensor:
        """y: [n, D] -> x [n, D]."""
        n = y.shape[0]
        h = self.untransform(y[:, : self.size])
        return torch.cat([h.reshape(n, -1), y[:, self.size:]], 1)


class ActNorm(ActiveLayer):
    """Per-channel affine ``y = (x + b) * exp(s)``; on the first forward pass (or :meth:`FlowSequence.data_init`)
    ``b, s`` are set so that each channel of that batch has zero mean and unit variance (Glow Sec. 3.1).
    log_det = H W sum(s)."""

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.bias = nn.Parameter(torch.zeros(1, shape[0], 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, shape[0], 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        if not bool(self.initialized):
            with torch.no_grad():
                mean = h.mean((0, 2, 3), keepdim=True)
                std = h.std((0, 2, 3), keepdim=True)
                self.bias.copy_(-mean)
                self.log_scale.copy_(-torch.log(std + 1e-6))
                self.initialized.fill_(True)
        y = (h + self.bias) * self.log_scale.exp()
        pixels = self.shape[1] * self.shape[2]
        return y, (pixels * self.log_scale.sum()).expand(h.shape[0])

    def untransform(self, y: Tensor) -> Tensor:
        return y.reshape(-1, *self.shape) * torch.exp(-self.log_scale) - self.bias


class InvConv1x1(ActiveLayer):
    """Invertible 1x1 convolution ``y = W x`` per pixel, ``W = P L (U + diag(sign * exp(log_s)))``
    (Glow Eq. 10), initialized from a random rotation. log_det = H W sum(log_s)."""

    def __init__(self, shape: Shape, generator: Optional[torch.Generator] = None) -> None:
        super().__init__(shape)
        c = shape[0]
        w = torch.linalg.qr(torch.randn(c, c, generator=generator))[0]
        p, lower, upper = torch.linalg.lu(w)
        s = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1))
        self.lower = nn.Parameter(lower * self.lower_mask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(s.abs()))

    def weight(self) -> Tensor:
        """W: [C, C]."""
        eye = torch.eye(self.shape[0], device=self.log_s.device)
        lower = self.lower * self.lower_mask + eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign_s * self.log_s.exp())
        return self.perm @ lower @ upper

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        y = torch.einsum("ij,njhw->nihw", self.weight(), h)
        pixels = self.shape[1] * self.shape[2]
        return y, (pixels * self.log_s.sum()).expand(h.shape[0])

    def untransform(self, y: Tensor) -> Tensor:
        return torch.einsum("ij,njhw->nihw", torch.linalg.inv(self.weight()), y.reshape(-1, *self.shape))


def _zero_conv(c_in: int, c_out: int) -> nn.Conv2d:
    conv = nn.Conv2d(c_in, c_out, 3, padding=1)
    nn.init.zeros_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


class AffineCoupling(ActiveLayer):
    """``y_a = x_a``, ``y_b = (x_b + t(x_a)) * sigmoid(r(x_a) + 2)`` on the channel halves (Glow Table 1).

    The network is conv3x3 - ReLU - conv1x1 - ReLU - zero-initialized conv3x3 (identity at init).
    log_det = sum log sigmoid(r + 2).
    """

    def __init__(self, shape: Shape, hidden: int = 64) -> None:
        super().__init__(shape)
        c = shape[0]
        self.c_a = c // 2
        self.net = nn.Sequential(nn.Conv2d(self.c_a, hidden, 3, padding=1), nn.ReLU(),
                                 nn.Conv2d(hidden, hidden, 1), nn.ReLU(), _zero_conv(hidden, 2 * (c - self.c_a)))

    def _shift_scale(self, x_a: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(x_a)
        return out[:, 0::2], torch.sigmoid(out[:, 1::2] + 2.0)

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        x_a, x_b = h[:, : self.c_a], h[:, self.c_a:]
        shift, scale = self._shift_scale(x_a)
        return torch.cat([x_a, (x_b + shift) * scale], 1), scale.log().flatten(1).sum(1)

    def untransform(self, y: Tensor) -> Tensor:
        y = y.reshape(-1, *self.shape)
        y_a, y_b = y[:, : self.c_a], y[:, self.c_a:]
        shift, scale = self._shift_scale(y_a)
        return torch.cat([y_a, y_b / scale - shift], 1)


class Squeeze(ActiveLayer):
    """Space-to-depth: [n, C, H, W] -> [n, 4C, H/2, W/2] (volume preserving, log_det = 0)."""

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        return squeeze(h), h.new_zeros(h.shape[0])

    def untransform(self, y: Tensor) -> Tensor:
        c, hh, ww = self.shape
        return unsqueeze(y.reshape(-1, 4 * c, hh // 2, ww // 2))

    @property
    def out_shape(self) -> Shape:
        c, hh, ww = self.shape
        return (4 * c, hh // 2, ww // 2)


class Split(ActiveLayer):
    """Multi-scale split: the second channel half ``z_b`` leaves the flow. Glow's learned prior
    ``z_b ~ N(mu(z_a), exp(log_sigma(z_a))^2)`` is written as ``y_b = (z_b - mu) * exp(-log_sigma)`` with
    a zero-initialized conv, so the prior of ``y_b`` is N(0, I). log_det = -sum log_sigma."""

    def __init__(self, shape: Shape) -> None:
        super().__init__(shape)
        self.c_a = shape[0] // 2
        self.prior = _zero_conv(self.c_a, 2 * (shape[0] - self.c_a))

    def _mean_log_sigma(self, z_a: Tensor) -> tuple[Tensor, Tensor]:
        out = self.prior(z_a)
        return out[:, 0::2], out[:, 1::2]

    def transform(self, h: Tensor) -> tuple[Tensor, Tensor]:
        z_a, z_b = h[:, : self.c_a], h[:, self.c_a:]
        mean, log_sigma = self._mean_log_sigma(z_a)
        return torch.cat([z_a, (z_b - mean) * torch.exp(-log_sigma)], 1), -log_sigma.flatten(1).sum(1)

    def untransform(self, y: Tensor) -> Tensor:
        y = y.reshape(-1, *self.shape)
        z_a, y_b = y[:, : self.c_a], y[:, self.c_a:]
        mean, log_sigma = self._mean_log_sigma(z_a)
        return torch.cat([z_a, y_b * torch.exp(log_sigma) + mean], 1)

    @property
    def out_shape(self) -> Shape:
        return (self.c_a, self.shape[1], self.shape[2])


class FlowSequence(nn.Module):
    """A normalizing flow as a sequence of layers ``x [n, D] -> FlowOutput(y [n, D], log_det [n])``
    with a base distribution on the last output.

    Arguments:
        layers: the layers, applied in order (data -> latent).
        event_shape: the shape of one data sample (flattened to D entries before the first layer).
        blocks: the block index of each layer (Glow's scales, or one CNF per block), used to split
            the flow into parts "by blocks".
        base: the distribution of the last output (default N(0, I) on D entries).
    """

    def __init__(self, layers: Sequence[nn.Module], event_shape: Sequence[int], blocks: Sequence[int],
                 base: Optional[nn.Module] = None) -> None:
        super().__init__()
        if len(blocks) != len(layers):
            raise ValueError(f"blocks names {len(blocks)} layers, the flow has {len(layers)}")
        self.layers = nn.ModuleList(layers)
        self.event_shape = tuple(event_shape)
        self.blocks = list(blocks)
        self.base = StandardNormal(math.prod(self.event_shape)) if base is None else base

    def run(self, x: Tensor, start: int = 0, stop: Optional[int] = None) -> FlowOutput:
        """Layers ``start .. stop-1`` on a flat state: x [n, D] -> FlowOutput(y [n, D], summed log_det [n],
        summed regularizers and NFE)."""
        out = FlowOutput(x, x.new_zeros(x.shape[0]))
        for layer in self.layers[start:stop]:
            out = out.then(layer(out.z))
        return out

    def forward(self, x: Tensor) -> FlowOutput:
        """x: [n, *event_shape] -> FlowOutput(z [n, D], delta_logp = log|det| [n]) (works with ``flow_loss``)."""
        return self.run(x.reshape(x.shape[0], -1))

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats. x: [n, *event_shape] -> [n]."""
        return self.forward(x).log_prob(self.base)

    def inverse(self, z: Tensor, start: int = 0, stop: Optional[int] = None) -> Tensor:
        """Undo layers ``start .. stop-1`` (last first). z: [n, D] -> [n, D]."""
        for layer in reversed(self.layers[start:stop]):
            z = layer.inverse(z)
        return z

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """n samples: [n, *event_shape]."""
        ref = next(self.parameters())
        z = self.base.sample(n, generator=generator).to(ref)
        return self.inverse(z).reshape(n, *self.event_shape)

    @torch.no_grad()
    def data_init(self, x: Tensor) -> None:
        """Initialize every data-dependent layer (ActNorm) from the batch x [n, *event_shape]."""
        self.forward(x)


def glow(shape: Shape, *, blocks: int = 3, steps: int = 32, hidden: int = 512,
         seed: Optional[int] = None) -> FlowSequence:
    """Glow's multi-scale architecture (Glow Fig. 2): ``blocks`` levels of squeeze, ``steps`` x
    (ActNorm, 1x1 conv, affine coupling), then a split (none after the last level).

    shape: (C, H, W) of the data, H and W divisible by ``2**blocks``. Paper CIFAR-10: 3 blocks x 32
    steps, 512 channels. ``seed`` fixes the random rotations of the 1x1 convolutions.
    """
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    layers: list[nn.Module] = []
    block_of: list[int] = []
    current: Shape = tuple(shape)  # type: ignore[assignment]
    if current[1] % 2**blocks or current[2] % 2**blocks:
        raise ValueError(f"H and W of {shape} must be divisible by 2**blocks = {2**blocks}")
    for b in range(blocks):
        squeeze = Squeeze(current)
        current = squeeze.out_shape
        level: list[nn.Module] = [squeeze]
        for _ in range(steps):
            level += [ActNorm(current), InvConv1x1(current, generator), AffineCoupling(current, hidden)]
        if b < blocks - 1:
            split = Split(current)
            current = split.out_shape
            level.append(split)
        layers += level
        block_of += [b] * len(level)
    return FlowSequence(layers, shape, block_of)
