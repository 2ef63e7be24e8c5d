"""RNODE regularizers (Finlay et al., "How to train your neural ODE", ICML 2020).

Each regularizer is an integrand ``R(t, z, f, noise, vjp) -> Tensor[n]`` that the CNF
integrates as an extra state of its augmented solve (RNODE Algorithm 1), kept out of the
solver's error control (see :mod:`cnflib.core.cnf`). The training loss is

    NLL + lambda_K * int_0^T K dt + lambda_J * int_0^T J dt

(:func:`cnflib.core.train.flow_loss` with ``weights={"kinetic": lambda_K, "jacobian": lambda_J}``).
Normalizations follow the RNODE code (cfinlay/ffjord-rnode): both terms are *means* over the
D dimensions, the kinetic one with a factor 1/2, so lambda = 0.01 means the same at any D.
"""
from __future__ import annotations

from typing import Optional

from torch import Tensor


class KineticEnergy:
    """Kinetic energy ``K = 1/2 * mean_i f_i(t, z)^2`` (RNODE Eq. 4 up to the 1/(2D) scale).

    Integrated over [0, T] it is the Benamou–Brenier transport cost of the flow's particle
    paths, minimized (for fixed end points) by straight lines at constant speed.
    f: [n, D] -> [n].
    """

    name = "kinetic"
    needs_vjp = False

    def __call__(self, t: Tensor, z: Tensor, f: Tensor, noise: Tensor, vjp: Optional[Tensor]) -> Tensor:
        return 0.5 * f.pow(2).mean(1)


class JacobianFrobenius:
    """Jacobian norm ``J = mean_i (eps^T df/dz)_i^2``: an unbiased estimate of ``||df/dz||_F^2 / D``.

    ``vjp = eps^T df/dz`` is the vector-Jacobian product the Hutchinson trace already computes
    (same noise, no extra backward pass); ``E[||eps^T A||^2] = tr(A A^T) = ||A||_F^2`` whenever
    ``E[eps eps^T] = I`` (Gaussian or Rademacher noise; RNODE Eq. 5).
    vjp: [n, D] -> [n].
    """

    name = "jacobian"
    needs_vjp = True

    def __call__(self, t: Tensor, z: Tensor, f: Tensor, noise: Tensor, vjp: Optional[Tensor]) -> Tensor:
        if vjp is None:
            raise ValueError("JacobianFrobenius needs the vector-Jacobian product (needs_vjp=True)")
        return vjp.pow(2).mean(1)


def rnode_regularizers(kinetic: float = 0.01, jacobian: float = 0.01) -> tuple[list, dict[str, float]]:
    """RNODE's regularizers and loss weights (paper defaults lambda_K = lambda_J = 0.01).

    A zero weight drops that regularizer. Returns ``(regularizers, weights)`` for
    ``CNF(..., regularizers=...)`` and ``flow_loss(weights)``; both empty for (0, 0).
    """
    regs: list = []
    weights: dict[str, float] = {}
    for reg, weight in ((KineticEnergy(), kinetic), (JacobianFrobenius(), jacobian)):
        if weight < 0:
            raise ValueError(f"the weight of {reg.name} must be >= 0, got {weight}")
        if weight > 0:
            regs.append(reg)
            weights[reg.name] = float(weight)
    return regs, weights
