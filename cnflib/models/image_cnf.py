"""FFJORD's multiscale image CNF (Grathwohl et al. 2019, §4; the ``odenvp`` model of rtqichen/ffjord).

Each scale is a stack of :class:`~cnflib.core.cnf.CNF` blocks whose vector fields are small
convolutional nets with time input (:class:`ConcatSquashConv2d` layers, softplus). Between scales
the image is squeezed (``[C, H, W] -> [4C, H/2, W/2]``) and half of its channels are factored out
to the latent code, as in RealNVP/Glow. The latent ``z`` [n, D] (``D = C * H * W``) is the last
scale's output followed by the factored-out parts, deepest first: its leading coordinates are the
ones that passed through every block (InfoCNF conditions its ``z_y`` on them).

The flow acts on logit-space images; :class:`cnflib.models.image_flow.ImageFlow` adds the
dequantization and the logit's log-det so that bits/dim are those of the discrete images.
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnflib.core.cnf import CNF
from cnflib.core.distributions import StandardNormal
from cnflib.core.flow import FlowOutput
from cnflib.core.transforms import squeeze, unsqueeze
from cnflib.core.vector_fields import ConcatSquashStack, make_activation, time_column

# (block index, block, block input [n, C, H, W]) -> the block's FlowOutput; see cnflib.infocnf.gates.
BlockSolver = Callable[[int, CNF, Tensor], FlowOutput]


class ConcatSquashConv2d(nn.Module):
    """FFJORD's time-conditioned conv layer ``conv(z) * sigmoid(g(t)) + h(t)`` (3x3, same padding).
    z: [n, c_in, H, W] -> [n, c_out, H, W]."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.gate = nn.Linear(1, c_out)
        self.shift = nn.Linear(1, c_out, bias=False)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        return self.conditioned(time_column(t, z), z)

    def conditioned(self, tt: Tensor, z: Tensor) -> Tensor:
        """The layer at the time column ``tt`` [1, 1] (made once per evaluation of a whole field)."""
        return torch.addcmul(self.shift(tt)[..., None, None], self.conv(z), torch.sigmoid(self.gate(tt))[..., None, None])

    def jvp(self, tt: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """The layer and its tangents: z [n, c_in, H, W], v [k, n, c_in, H, W] -> ([n, c_out, H, W], [k, n, c_out, H, W])."""
        gate = torch.sigmoid(self.gate(tt))[..., None, None]
        out = torch.addcmul(self.shift(tt)[..., None, None], self.conv(z), gate)
        conv = self.conv
        dv = F.conv2d(v.flatten(0, 1), conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
        return out, dv.view(*v.shape[:2], *dv.shape[1:]) * gate


class ConvODENet(ConcatSquashStack):
    """The vector field of one image CNF block: ``f(t, z)``, z: [n, C, H, W] -> [n, C, H, W].

    Arguments:
        channels: C.
        hidden: channel widths of the hidden layers (FFJORD images: 64-64-64).
        activation: name in ``cnflib.core.vector_fields.ACTIVATIONS`` (FFJORD images: softplus).
    """

    def __init__(self, channels: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "softplus") -> None:
        super().__init__()
        widths = [channels, *hidden, channels]
        self.layers = nn.ModuleList(ConcatSquashConv2d(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.activations = nn.ModuleList(make_activation(activation) for _ in hidden)


def plain_solve(index: int, block: CNF, h: Tensor) -> FlowOutput:
    """The default :data:`BlockSolver`: the block at its own solver settings."""
    return block(h)


class MultiscaleCNF(nn.Module):
    """FFJORD's multiscale CNF on images of shape ``(C, H, W)``.

    Arguments:
        shape: ``(C, H, W)``; ``H`` and ``W`` divisible by ``2 ** (scales - 1)``.
        scales: number of scales; between two, squeeze and factor out half the channels.
        blocks_per_scale: CNF blocks at each scale (FFJORD images: 2).
        hidden, activation: of each block's :class:`ConvODENet`.
        base: the distribution of the latent ``z`` [n, D] (default N(0, I)).
        cnf_options: keyword arguments of every :class:`CNF` (trace, solver, atol, rtol,
            sensitivity, T, regularizers, ...).

    After a forward pass, ``block_nfe`` holds each block's forward NFE.
    """

    def __init__(self, shape: Sequence[int], scales: int = 2, blocks_per_scale: int = 1,
                 hidden: Sequence[int] = (16, 16), activation: str = "softplus", base: Optional[nn.Module] = None,
                 **cnf_options) -> None:
        super().__init__()
        c, h, w = shape
        if h % 2 ** (scales - 1) or w % 2 ** (scales - 1):
            raise ValueError(f"image {h}x{w} cannot be squeezed {scales - 1} times")
        self.shape = (c, h, w)
        self.scales = scales
        self.blocks = nn.ModuleList()
        self.block_shapes: list[tuple[int, int, int]] = []
        for s in range(scales):
            for _ in range(blocks_per_scale):
                self.blocks.append(CNF(ConvODENet(c, hidden, activation), (c, h, w), **cnf_options))
                self.block_shapes.append((c, h, w))
            c, h, w = 2 * c, h // 2, w // 2  # squeeze (4C) then factor out half (2C)
        self.blocks_per_scale = blocks_per_scale
        self.base = StandardNormal(math.prod(self.shape)) if base is None else base
        self.block_nfe: list[int] = []

    @property
    def dim(self) -> int:
        return math.prod(self.shape)

    def forward(self, x: Tensor, solve_block: BlockSolver = plain_solve) -> FlowOutput:
        """Data to latent. x: [n, C, H, W] -> FlowOutput (z [n, D], delta_logp [n], regularizers
        summed over blocks, nfe summed over blocks).

        ``solve_block(k, block, h)`` runs block ``k`` on its input ``h`` (e.g. with a gated
        tolerance, :class:`cnflib.infocnf.gates.ToleranceGates`); default: the block's own settings.
        """
        h, delta, parts, nfe = x, x.new_zeros(x.shape[0]), [], []
        regularizers: dict[str, Tensor] = {}
        for k, block in enumerate(self.blocks):
            out = solve_block(k, block, h)
            h, delta = out.z, delta + out.delta_logp
            for name, value in out.regularizers.items():
                regularizers[name] = regularizers.get(name, 0) + value
            nfe.append(block.nfe_forward)
            last_of_scale = (k + 1) % self.blocks_per_scale == 0
            if last_of_scale and k + 1 < len(self.blocks):
                h = squeeze(h)
                half = h.shape[1] // 2
                parts.append(h[:, :half].flatten(1))
                h = h[:, half:]
        self.block_nfe = nfe
        return FlowOutput(torch.cat([h.flatten(1), *reversed(parts)], 1), delta, regularizers, sum(nfe))

    def log_prob(self, x: Tensor, context: Optional[Tensor] = None) -> Tensor:
        """log p(x | context) in nats of logit-space images: x [n, C, H, W] -> [n]."""
        return self.forward(x).log_prob(self.base, context)

    @torch.no_grad()
    def inverse(self, z: Tensor) -> Tensor:
        """Latent to data (reverse solves). z: [n, D] -> [n, C, H, W]."""
        n = z.shape[0]
        shapes = [tuple(self.shape)]
        for _ in range(self.scales - 1):
            c, h, w = shapes[-1]
            shapes.append((2 * c, h // 2, w // 2))  # after squeeze and factor-out
        sizes = [math.prod(s) for s in shapes[1:]]  # factored-out part at the end of scale s = size of scale s + 1
        chunks = list(z.split([sizes[-1] if sizes else z.shape[1], *reversed(sizes)], 1))
        x = chunks.pop(0).reshape(n, *shapes[-1])
        for k in reversed(range(len(self.blocks))):
            last_of_scale = (k + 1) % self.blocks_per_scale == 0
            if last_of_scale and k + 1 < len(self.blocks):
                factored = chunks.pop(0).reshape(n, *x.shape[1:])
                x = unsqueeze(torch.cat([factored, x], 1))
            x = self.blocks[k].inverse(x)
        return x
