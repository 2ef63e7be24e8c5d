"""Vanilla FFJORD vs RNODE on a toy, tabular or image set: one training run and its measurements.

Used by ``notebooks/03_rnode.ipynb`` and ``benchmarks/rnode_time_to_nll.py`` so that both
train, evaluate and account NFE in exactly the same way.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.core.cnf import CNF
from cnflib.core.density import mean_nll, nll_evaluator
from cnflib.core.train import fit, flow_loss, late_mean
from cnflib.core.vector_fields import ConcatSquashMLP
from cnflib.data import images
from cnflib.data.vectors import vector_splits
from cnflib.models.image_cnf import MultiscaleCNF
from cnflib.models.image_flow import ImageFlow, ImageRun, image_flow_loss
from cnflib.models.image_flow import train_image_flow as _train_image
from cnflib.rnode.regularizers import rnode_regularizers
from cnflib.rnode.straightness import kinetic_ratio, straightness

IMAGE_SETS: dict[str, Callable[[str], images.ImageSplit]] = {
    "digits": images.digits, "mnist": images.mnist, "cifar10": images.cifar10}


@dataclass
class FlowRun:
    """A trained flow, its training history (see :func:`cnflib.core.train.fit`) and its test points."""

    label: str
    model: CNF
    history: pd.DataFrame
    x_test: Tensor

    @property
    def total_nfe(self) -> int:
        """Forward plus backward function evaluations over the whole training run."""
        return int(self.history.nfe_forward.sum() + self.history.nfe_backward.sum())


def train_flow(dataset: str, *, kinetic: float = 0.0, jacobian: float = 0.0, steps: int = 500,
               hidden: Sequence[int] = (32, 32, 32), activation: str = "tanh", trace: str = "exact",
               T: float = 1.0, tol: float = 1e-5, eval_tol: float = 1e-6, batch_size: int = 256, lr: float = 3e-3,
               seed: int = 0, n_train: int = 20_000, n_test: int = 2_000, eval_every: int = 0,
               label: Optional[str] = None, **fit_options) -> FlowRun:
    """Train a CNF (dopri5 at ``tol``, adjoint) on ``dataset`` (see :func:`cnflib.data.vectors.vector_splits`) with RNODE
    weights ``kinetic``, ``jacobian`` (both 0: vanilla FFJORD). The history gets ``eval_nll`` /
    ``eval_nfe`` (test set, dopri5 at ``eval_tol``) every ``eval_every`` steps and at the end.
    ``fit_options`` go to :func:`cnflib.core.train.fit` (e.g. the trainer settings)."""
    torch.manual_seed(seed)
    x_train, x_test = vector_splits(dataset, n_train, n_test, seed)
    regularizers, weights = rnode_regularizers(kinetic, jacobian)
    model = CNF(ConcatSquashMLP(x_train.shape[1], tuple(hidden), activation), trace=trace, T=T, atol=tol, rtol=tol,
                regularizers=regularizers)

    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    history = fit(model, x_train, steps=steps, loss=flow_loss(weights), batch_size=batch_size, lr=lr,
                  weight_decay=1e-5, seed=seed, evaluate=nll_evaluator(x_test, atol=eval_tol, rtol=eval_tol), eval_every=eval_every,
                  progress=False, desc=f"{dataset} {label}", **fit_options)
    return FlowRun(label, model, history, x_test)


@torch.no_grad()
def path_measures(model: CNF, x: Tensor, grid: int = 65) -> dict[str, float]:
    """Mean straightness and kinetic ratio (see :mod:`cnflib.rnode.straightness`) of the paths from
    ``x`` [n, D] over [0, T], sampled by rk4 with ``grid - 1`` steps."""
    t_span = torch.linspace(0.0, model.T, grid)
    with model.solver_options(solver="rk4", steps=grid - 1):
        traj = model.trajectory(x, t_span)
    return {"straightness": straightness(traj).mean().item(), "kinetic_ratio": kinetic_ratio(traj).mean().item()}


def summarize(runs: Sequence[FlowRun], eval_tol: float = 1e-6, cheap: Optional[dict] = None,
              n_paths: int = 500) -> pd.DataFrame:
    """One row per run: final test NLL (dopri5 at ``eval_tol``) and its NFE, the NLL under a cheap
    fixed-step solve (default rk4 with 4 steps), total training NFE (forward, backward), late
    forward NFE per iteration (last 10%), wall seconds and path straightness."""
    cheap = cheap or {"solver": "rk4", "steps": 4}
    rows = []
    for run in runs:
        h = run.history
        nll, nfe = mean_nll(run.model, run.x_test, atol=eval_tol, rtol=eval_tol)
        rows.append({
            "run": run.label, "test_nll": nll, "eval_nfe": nfe,
            "cheap_nll": mean_nll(run.model, run.x_test, **cheap)[0],
            "nfe_forward_total": int(h.nfe_forward.sum()), "nfe_backward_total": int(h.nfe_backward.sum()),
            "nfe_total": run.total_nfe, "late_nfe_forward": late_mean(h.nfe_forward),
            "seconds": float(h.seconds.iloc[-1]),
            **path_measures(run.model, run.x_test[:n_paths]),
        })
    return pd.DataFrame(rows).set_index("run")


def train_image_flow(dataset: str, *, kinetic: float = 0.0, jacobian: float = 0.0, steps: int = 100,
                     scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16),
                     tol: float = 1e-5, eval_tol: float = 1e-5, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0, n_test: int = 500, eval_every: int = 0, label: Optional[str] = None,
                     **fit_options) -> ImageRun:
    """Train FFJORD's multiscale CNF (:class:`cnflib.models.image_flow.ImageFlow`: softplus,
    Hutchinson trace, dopri5 at ``tol``, adjoint, N(0, I) base) on an image set (``digits``,
    ``mnist``, ``cifar10``) with RNODE weights ``kinetic``, ``jacobian`` (both 0: vanilla FFJORD).
    The history's ``eval_bpd`` / ``eval_nfe``: ``n_test`` test images, dopri5 at ``eval_tol``."""
    load = IMAGE_SETS[check_choice("image set", dataset, IMAGE_SETS)]
    train, test = load("train"), load("test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n_test]
    test = images.ImageSplit(test.x[pick], test.y[pick], test.levels)
    regularizers, weights = rnode_regularizers(kinetic, jacobian)
    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    torch.manual_seed(seed)
    flow = MultiscaleCNF(train.event_shape, scales, blocks_per_scale, tuple(hidden), trace="hutchinson", solver="dopri5",
                         atol=tol, rtol=tol, sensitivity="adjoint", T=1.0, regularizers=list(regularizers))
    model = ImageFlow(flow, levels=train.levels)
    return _train_image(label, model, train, test, image_flow_loss(weights), steps=steps, batch_size=batch_size, lr=lr,
                        eval_tol=eval_tol, eval_every=eval_every, seed=seed, **fit_options)


def summarize_images(runs: Sequence[ImageRun]) -> pd.DataFrame:
    """One row per image run: final test bits/dim and its NFE (from the last evaluation), total
    training NFE, late forward NFE per iteration (last 10%), wall seconds."""
    rows = []
    for run in runs:
        h = run.history
        rows.append({"run": run.label, "test_bpd": float(h.eval_bpd.dropna().iloc[-1]),
                     "eval_nfe": float(h.eval_nfe.dropna().iloc[-1]),
                     "nfe_total": int(h.nfe_forward.sum() + h.nfe_backward.sum()),
                     "late_nfe_forward": late_mean(h.nfe_forward),
                     "seconds": float(h.seconds.iloc[-1])})
    return pd.DataFrame(rows).set_index("run")
