"""Couplings of a data minibatch with a base (noise) minibatch for flow matching.

* ``"independent"``: the pairs as drawn, ``q(x0) q(x1)`` (CFM / I-CFM: Lipman et al. 2023; Liu et al. 2023;
  Tong et al. 2024);
* ``"ot"``: the exact minibatch optimal-transport plan for the squared Euclidean cost (OT-CFM: Tong et al.
  2024). Between two uniform batches of equal size an optimal plan is a permutation
  (Birkhoff–von Neumann), so the exact plan is a linear assignment, solved here by
  :func:`scipy.optimize.linear_sum_assignment` (Hungarian / Jonker–Volgenant, O(n^3)).
"""
from __future__ import annotations

import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from cnflib.core._validation import check_choice

COUPLINGS: tuple[str, ...] = ("independent", "ot")


def squared_distances(x0: Tensor, x1: Tensor) -> Tensor:
    """The cost matrix ``C_ij = |x0_i - x1_j|^2``. x0, x1: [n, ...] -> [n, n]."""
    a, b = x0.reshape(len(x0), -1), x1.reshape(len(x1), -1)
    return torch.cdist(a.double(), b.double()).pow(2)


@torch.no_grad()
def ot_assignment(x0: Tensor, x1: Tensor) -> Tensor:
    """The permutation ``p`` minimizing ``sum_i |x0_i - x1_{p_i}|^2``. x0, x1: [n, ...] -> [n] (long)."""
    if len(x0) != len(x1):
        raise ValueError(f"an assignment needs batches of equal size; got {len(x0)} and {len(x1)}")
    rows, cols = linear_sum_assignment(squared_distances(x0, x1).cpu().numpy())
    perm = torch.empty(len(x0), dtype=torch.long)
    perm[torch.as_tensor(rows)] = torch.as_tensor(cols)
    return perm.to(x0.device)


def couple(x0: Tensor, x1: Tensor, coupling: str) -> tuple[Tensor, Tensor]:
    """Pair the data batch ``x0`` with the base batch ``x1`` (both [n, ...]) by ``coupling`` (see
    ``COUPLINGS``): returns ``(x0, x1')`` with ``x1'`` reordered (``"ot"``) or unchanged."""
    if check_choice("coupling", coupling, COUPLINGS) == "independent":
        return x0, x1
    return x0, x1[ot_assignment(x0, x1)]


def transport_cost(x0: Tensor, x1: Tensor) -> float:
    """Mean squared distance of the pairs as given. x0, x1: [n, ...] -> float."""
    return (x0 - x1).reshape(len(x0), -1).pow(2).sum(1).mean().item()
