"""Vanilla FFJORD vs RNODE on a toy, tabular or image set: one training run and its measurements.

Used by ``notebooks/03_rnode.ipynb`` and ``benchmarks/rnode_time_to_nll.py`` so that both
train, evaluate and account NFE in exactly the same way.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor, nn

from cnflib._validation import check_choice
from cnflib.data import images
from cnflib.data.vectors import vector_splits
from cnflib.density import mean_nll
from cnflib.models import CNF, ConcatSquashMLP
from cnflib.models.cnf import standard_normal_log_prob
from cnflib.models.image_cnf import MultiscaleCNF, image_nll, preprocess
from cnflib.regularizers import rnode
from cnflib.straightness import kinetic_ratio, straightness
from cnflib.train import LossFn, fit, flow_loss

IMAGE_SETS: dict[str, Callable[[str], images.ImageSplit]] = {
    "digits": images.digits, "mnist": images.mnist, "cifar10": images.cifar10}


@dataclass
class FlowRun:
    """A trained flow, its training history (see :func:`cnflib.train.fit`) and its test points."""

    label: str
    model: nn.Module
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
               label: Optional[str] = None) -> FlowRun:
    """Train a CNF (dopri5 at ``tol``, adjoint) on ``dataset`` (see :func:`cnflib.data.vectors.vector_splits`) with RNODE
    weights ``kinetic``, ``jacobian`` (both 0: vanilla FFJORD). The history gets ``eval_nll`` /
    ``eval_nfe`` (test set, dopri5 at ``eval_tol``) every ``eval_every`` steps and at the end."""
    torch.manual_seed(seed)
    x_train, x_test = vector_splits(dataset, n_train, n_test, seed)
    regularizers, weights = rnode(kinetic, jacobian)
    model = CNF(ConcatSquashMLP(x_train.shape[1], tuple(hidden), activation), trace=trace, T=T, atol=tol, rtol=tol,
                regularizers=regularizers)

    def evaluate(m: CNF) -> dict[str, float]:
        nll, nfe = mean_nll(m, x_test, atol=eval_tol, rtol=eval_tol)
        return {"nll": nll, "nfe": nfe}

    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    history = fit(model, x_train, steps=steps, loss=flow_loss(weights), batch_size=batch_size, lr=lr,
                  weight_decay=1e-5, seed=seed, evaluate=evaluate, eval_every=eval_every, progress=False,
                  desc=f"{dataset} {label}")
    return FlowRun(label, model, history, x_test)


@torch.no_grad()
def path_measures(model: CNF, x: Tensor, grid: int = 65) -> dict[str, float]:
    """Mean straightness and kinetic ratio (see :mod:`cnflib.straightness`) of the paths from
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
        tail = max(len(h) // 10, 1)
        nll, nfe = mean_nll(run.model, run.x_test, atol=eval_tol, rtol=eval_tol)
        rows.append({
            "run": run.label, "test_nll": nll, "eval_nfe": nfe,
            "cheap_nll": mean_nll(run.model, run.x_test, **cheap)[0],
            "nfe_forward_total": int(h.nfe_forward.sum()), "nfe_backward_total": int(h.nfe_backward.sum()),
            "nfe_total": run.total_nfe, "late_nfe_forward": float(h.nfe_forward.iloc[-tail:].mean()),
            "seconds": float(h.seconds.iloc[-1]),
            **path_measures(run.model, run.x_test[:n_paths]),
        })
    return pd.DataFrame(rows).set_index("run")


def image_rnode_loss(weights: dict[str, float], levels: int) -> LossFn:
    """Loss of a :class:`MultiscaleCNF` on integer images [n, C, H, W]: mean bits/dim plus
    ``sum_j weights[j] * mean(regularizer_j)`` (RNODE's objective on images)."""

    def loss(model: MultiscaleCNF, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        y, log_det = preprocess(x, levels)
        out = model(y)
        bpd = images.bits_per_dim(image_nll(standard_normal_log_prob(out.z), out.delta_logp, log_det), model.dim,
                                  levels).mean()
        total = bpd + sum(w * out.regularizers[name].mean() for name, w in weights.items())
        return total, {"bpd": bpd.item(), **{k: v.mean().item() for k, v in out.regularizers.items()}}

    return loss


@torch.no_grad()
def image_bits_per_dim(model: MultiscaleCNF, x: Tensor, levels: int, tol: float, batch_size: int = 500,
                       seed: int = 0) -> tuple[float, float]:
    """Mean test bits/dim of integer images x [n, C, H, W] (one dequantization, seeded) with every
    block solved by dopri5 at ``atol = rtol = tol``, and the forward NFE per batch (all blocks)."""
    torch.manual_seed(seed)
    loss = image_rnode_loss({}, levels)
    device = next(model.parameters()).device
    total, nfe = 0.0, 0
    with contextlib.ExitStack() as stack:
        for block in model.blocks:
            stack.enter_context(block.solver_options(solver="dopri5", atol=tol, rtol=tol))
        chunks = x.split(batch_size)
        for chunk in chunks:
            total += loss(model, chunk.to(device))[1]["bpd"] * len(chunk)
            nfe += sum(block.nfe_forward for block in model.blocks)
    return total / len(x), nfe / len(chunks)


def train_image_flow(dataset: str, *, kinetic: float = 0.0, jacobian: float = 0.0, steps: int = 100,
                     scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16),
                     tol: float = 1e-5, eval_tol: float = 1e-5, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0, n_test: int = 500, eval_every: int = 0, label: Optional[str] = None) -> FlowRun:
    """Train FFJORD's multiscale CNF (softplus, Hutchinson trace, dopri5 at ``tol``, adjoint) on an
    image set (``digits``, ``mnist``, ``cifar10``) with RNODE weights ``kinetic``, ``jacobian``
    (both 0: vanilla FFJORD). The history's ``eval_bpd`` / ``eval_nfe``: ``n_test`` test images,
    dopri5 at ``eval_tol``."""
    load = IMAGE_SETS[check_choice("image set", dataset, IMAGE_SETS)]
    train, test = load("train"), load("test")
    torch.manual_seed(seed)
    x_test = test.x[torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n_test]]
    regularizers, weights = rnode(kinetic, jacobian)
    model = MultiscaleCNF(train.event_shape, scales, blocks_per_scale, tuple(hidden), trace="hutchinson",
                          atol=tol, rtol=tol, sensitivity="adjoint", regularizers=regularizers)

    def evaluate(m: MultiscaleCNF) -> dict[str, float]:
        bpd, nfe = image_bits_per_dim(m, x_test, train.levels, eval_tol, seed=seed)
        return {"bpd": bpd, "nfe": nfe}

    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    history = fit(model, train.x, steps=steps, loss=image_rnode_loss(weights, train.levels), batch_size=batch_size,
                  lr=lr, seed=seed, evaluate=evaluate, eval_every=eval_every, progress=False, desc=f"{dataset} {label}")
    return FlowRun(label, model, history, x_test)


def summarize_images(runs: Sequence[FlowRun]) -> pd.DataFrame:
    """One row per image run: final test bits/dim and its NFE (from the last evaluation), total
    training NFE, late forward NFE per iteration (last 10%), wall seconds."""
    rows = []
    for run in runs:
        h = run.history
        tail = max(len(h) // 10, 1)
        rows.append({"run": run.label, "test_bpd": float(h.eval_bpd.dropna().iloc[-1]),
                     "eval_nfe": float(h.eval_nfe.dropna().iloc[-1]), "nfe_total": run.total_nfe,
                     "late_nfe_forward": float(h.nfe_forward.iloc[-tail:].mean()),
                     "seconds": float(h.seconds.iloc[-1])})
    return pd.DataFrame(rows).set_index("run")
