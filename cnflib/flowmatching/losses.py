"""The conditional flow-matching loss (CFM / I-CFM and OT-CFM) as a :func:`cnflib.core.train.fit` loss.

For data ``x0 ~ q_0`` (a minibatch), base samples ``x1 ~ N(0, I)``, a coupling ``pi`` of the two
batches (:mod:`cnflib.flowmatching.couplings`) and ``t ~ U[0, T]``:

    L_CFM(theta) = E_{t, (x0, x1) ~ pi, eps} | v_theta(t, x_t) - u_t(x_t | x0, x1) |^2

with ``x_t``, ``u_t`` from :func:`cnflib.flowmatching.paths.conditional_path` (Lipman et al. 2023,
Eq. 9; Tong et al. 2024's CFM objective). Its gradient equals that of the marginal
flow-matching loss ``E |v_theta(t, x) - u_t(x)|^2`` (Lipman et al. 2023, Theorem 2), so its
minimizer is the marginal field; no ODE is solved in training (training NFE = 0).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from cnflib.core._validation import check_choice, check_positive
from cnflib.core.train import LossFn
from cnflib.flowmatching.couplings import COUPLINGS, couple, transport_cost
from cnflib.flowmatching.paths import conditional_path


def cfm_loss(coupling: str = "ot", sigma: float = 0.0) -> LossFn:
    """``loss(model, x0) -> (loss, metrics)`` for :func:`cnflib.core.train.fit`: the CFM loss above for
    a :class:`cnflib.core.CNF` ``model`` (its ``vector_field``, ``T`` and ``base`` are used) on a data
    batch ``x0`` [n, D], mean over the batch and the D coordinates (TorchCFM's normalization).

    coupling: ``"independent"`` (I-CFM) or ``"ot"`` (OT-CFM, exact minibatch assignment).
    sigma: the constant width of the Gaussian path (0: straight lines, rectified flow).
    The metrics report ``fm_loss`` and ``pair_cost``, the mean squared distance of the coupled pairs.
    """
    check_choice("coupling", coupling, COUPLINGS)
    if sigma != 0:
        check_positive("sigma", sigma, "the path's width, e.g. 0 or 0.01")

    def loss(model: nn.Module, x0: Tensor) -> tuple[Tensor, dict[str, float]]:
        x1 = model.base.sample(len(x0)).to(x0)
        x0, x1 = couple(x0, x1, coupling)
        t = torch.rand(len(x0), device=x0.device, dtype=x0.dtype) * model.T
        xt, ut = conditional_path(x0, x1, t, sigma=sigma, T=model.T)
        value = (model.vector_field(t, xt) - ut).pow(2).mean()
        return value, {"fm_loss": value.item(), "pair_cost": transport_cost(x0, x1)}

    return loss
