"""Flow-matching runs of notebook 08: a CNF trained by :func:`cfm_loss` with :func:`cnflib.core.train.fit`,
and the sampling measures used to compare it with maximum-likelihood CNFs.

The model is an ordinary :class:`cnflib.core.CNF` around a :class:`cnflib.core.ConcatSquashMLP`
(exact trace, dopri5 at ``tol``), built exactly as :func:`cnflib.rnode.train_flow` builds FFJORD's,
so that the same exact-likelihood evaluation (:func:`cnflib.core.density.mean_nll`) scores both.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor

from cnflib.core.cnf import CNF
from cnflib.core.density import sliced_wasserstein
from cnflib.core.train import fit
from cnflib.core.vector_fields import ConcatSquashMLP
from cnflib.flowmatching.losses import cfm_loss


def train_matching(x_train: Tensor, *, coupling: str = "ot", sigma: float = 0.0, steps: int = 1000,
                   hidden: Sequence[int] = (32, 32, 32), activation: str = "tanh", T: float = 1.0, tol: float = 1e-5,
                   batch_size: int = 256, lr: float = 3e-3, seed: int = 0,
                   evaluate: Optional[Callable[[CNF], dict[str, float]]] = None, eval_every: int = 0,
                   desc: Optional[str] = None, **fit_options) -> tuple[CNF, pd.DataFrame]:
    """Train a CNF's field on ``x_train`` [N, D] by conditional flow matching (``coupling``: ``"independent"``
    or ``"ot"``; ``sigma``: the path width). Same network, optimizer (Adam, weight decay 1e-5) and
    minibatch stream as :func:`cnflib.rnode.train_flow` with the same ``seed``. ``evaluate``
    (e.g. :func:`cnflib.core.density.nll_evaluator`) is logged as ``eval_*`` every ``eval_every`` steps.
    ``fit_options`` go to :func:`cnflib.core.train.fit` (e.g. the trainer settings).
    Returns the CNF (its solver: dopri5 at ``tol``, exact trace) and ``fit``'s history (training NFE 0)."""
    torch.manual_seed(seed)
    model = CNF(ConcatSquashMLP(x_train.shape[1], tuple(hidden), activation), trace="exact", T=T, atol=tol, rtol=tol)
    history = fit(model, x_train, steps=steps, loss=cfm_loss(coupling, sigma), batch_size=batch_size, lr=lr,
                  weight_decay=1e-5, seed=seed, evaluate=evaluate, eval_every=eval_every, progress=False,
                  desc=desc or f"CFM {coupling}", **fit_options)
    return model, history


@torch.no_grad()
def sample_with(model: CNF, n: int, seed: int = 0, **solver) -> tuple[Tensor, int]:
    """``n`` samples [n, D] from base noise of ``seed`` by the reverse solve at the given solver settings
    (e.g. ``solver="euler", steps=2`` or ``atol=1e-5, rtol=1e-5``), and that solve's NFE."""
    with model.solver_options(**solver):
        x = model.sample(n, generator=torch.Generator().manual_seed(seed))
    return x, model.nfe_forward


def few_step_quality(model: CNF, x_ref: Tensor, steps: Sequence[int] = (1, 2, 4, 8), seed: int = 0,
                     n_projections: int = 256, tol: float = 1e-5) -> dict[str, float]:
    """Sliced 2-Wasserstein distance (:func:`cnflib.core.density.sliced_wasserstein`, same projections for
    every solve) between ``len(x_ref)`` samples and the reference points ``x_ref`` [n, D], for Euler with each
    number of ``steps`` and for dopri5 at ``tol``: ``{"sw_euler1": ..., "sw_dopri5": ..., "nfe_dopri5": ...}``.
    The same base noise (``seed``) drives every solve, so the differences are the solver's."""
    out: dict[str, float] = {}
    for k in steps:
        x, _ = sample_with(model, len(x_ref), seed, solver="euler", steps=k)
        out[f"sw_euler{k}"] = sliced_wasserstein(x, x_ref, n_projections, torch.Generator().manual_seed(seed + 1))
    x, nfe = sample_with(model, len(x_ref), seed, solver="dopri5", atol=tol, rtol=tol)
    out["sw_dopri5"] = sliced_wasserstein(x, x_ref, n_projections, torch.Generator().manual_seed(seed + 1))
    out["nfe_dopri5"] = float(nfe)
    return out
