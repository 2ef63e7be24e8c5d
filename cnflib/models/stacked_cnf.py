"""Stacked CNF blocks with the layer interface of :mod:`cnflib.models.glow`, so that a flow of
CNFs can be split into parts and trained like Glow (:mod:`cnflib.parts`)."""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from cnflib.core.cnf import CNF
from cnflib.core.flow import FlowOutput
from cnflib.models.glow import FlowSequence
from cnflib.core.vector_fields import ConcatSquashMLP


class CNFLayer(nn.Module):
    """One :class:`~cnflib.core.cnf.CNF` as a layer: ``x [n, D] -> FlowOutput`` (its latent, the
    integrated divergence, its integrated regularizers and NFE)."""

    def __init__(self, cnf: CNF) -> None:
        super().__init__()
        self.cnf = cnf

    def forward(self, x: Tensor) -> FlowOutput:
        return self.cnf(x)

    def inverse(self, y: Tensor) -> Tensor:
        """y: [n, D] -> x [n, D] by the reverse solve."""
        return self.cnf.inverse(y)


def stacked_cnf(dim: int, blocks: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh",
                **cnf_options: Any) -> FlowSequence:
    """``blocks`` CNFs (each a :class:`ConcatSquashMLP` field) in sequence, one block per layer.

    ``cnf_options`` go to :class:`~cnflib.core.cnf.CNF` (solver, steps, T, trace, ...).
    """
    layers = [CNFLayer(CNF(ConcatSquashMLP(dim, hidden, activation), **cnf_options)) for _ in range(blocks)]
    return FlowSequence(layers, (dim,), list(range(blocks)))
