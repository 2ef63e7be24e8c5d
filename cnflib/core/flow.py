"""The one result type of every flow in cnflib.

Every flow (``CNF``, the multiscale image CNF, Glow and its layers, stacked CNFs, the image model
with a conditional prior) maps data ``x`` to a :class:`FlowOutput` and takes its base
distribution as an argument (:mod:`cnflib.core.distributions`), so that one loss and one contract
test serve all of them: ``log p(x | context) = log p_base(z | context) + delta_logp``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Protocol

from torch import Tensor


class BaseDistribution(Protocol):
    """What a flow needs of its base distribution (see :mod:`cnflib.core.distributions`)."""

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor: ...


@dataclass
class FlowOutput:
    """Result of pushing data through a flow.

    Attributes:
        z: the latent [n, *latent_shape].
        delta_logp: the log-determinant of the map x -> z [n] (for a CNF the integrated
            divergence, FFJORD Eq. 4; for an image model it includes the logit's log-det).
        regularizers: integrated regularizers ``{name: Tensor[n]}`` (RNODE), summed over blocks.
        nfe: forward function evaluations of the solves that produced it (0 for discrete layers).
    """

    z: Tensor
    delta_logp: Tensor
    regularizers: dict[str, Tensor] = field(default_factory=dict)
    nfe: int = 0

    def log_prob(self, base: BaseDistribution, context: Optional[Tensor] = None) -> Tensor:
        """log p(x) = log p_base(z | context) + delta_logp: [n] (the change of variables)."""
        return base.log_prob(self.z, context) + self.delta_logp

    def then(self, other: "FlowOutput") -> "FlowOutput":
        """The composition: ``other`` applied to this output's ``z``; log-dets, regularizers and NFE add."""
        regularizers = dict(self.regularizers)
        for name, value in other.regularizers.items():
            regularizers[name] = regularizers[name] + value if name in regularizers else value
        return FlowOutput(other.z, self.delta_logp + other.delta_logp, regularizers, self.nfe + other.nfe)
