"""Stacked CNF blocks with the layer interface of :mod:`cnflib.models.glow`, so that a flow of
CNFs can be split into parts and trained like Glow (:mod:`cnflib.parts`)."""
from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor, nn

from cnflib.models.cnf import CNF
from cnflib.models.glow import FlowSequence
from cnflib.models.vector_fields import ConcatSquashMLP


class CNFLayer(nn.Module):
    """One :class:`~cnflib.models.cnf.CNF` as a layer: ``x [n, D] -> (z [n, D], log_det [n])``.

    ``log_det`` is the CNF's ``delta_logp`` (the integrated divergence). Integrated regularizers,
    if the CNF has any, are not returned by this interface.
    """

    def __init__(self, cnf: CNF) -> None:
        super().__init__()
        self.cnf = cnf

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        out = self.cnf(x)
        return out.z, out.delta_logp

    def inverse(self, y: Tensor) -> Tensor:
        """y: [n, D] -> x [n, D] by the reverse solve."""
        return self.cnf.inverse(y)


def stacked_cnf(dim: int, blocks: int, hidden: Sequence[int] = (64, 64, 64), activation: str = "tanh",
                **cnf_options: Any) -> FlowSequence:
    """``blocks`` CNFs (each a :class:`ConcatSquashMLP` field) in sequence, one block per layer.

    ``cnf_options`` go to :class:`~cnflib.models.cnf.CNF` (solver, steps, T, trace, ...).
    """
    layers = [CNFLayer(CNF(ConcatSquashMLP(dim, hidden, activation), **cnf_options)) for _ in range(blocks)]
    return FlowSequence(layers, (dim,), list(range(blocks)))
