"""Vanilla FFJORD vs RNODE on a toy, tabular or image set: one training run and its measurements.

Used by ``notebooks/03_rnode.ipynb`` and ``benchmarks/rnode_time_to_nll.py`` so that both
train, evaluate and account NFE in exactly the same way. RNODE's protocol (Finlay et al. 2020,
Sec. 5): train with a fixed-step solver (RK4, step 0.25 on MNIST) and score with dopri5 at a tight
tolerance; :func:`train_flow` and :func:`train_image_flow` take ``solver="rk4", step_size=0.25``
for that, and always evaluate with dopri5 at ``eval_tol`` (exact trace on vector data), on a
validation split during training and on the test split at the end (:func:`summarize`).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Sequence

import pandas as pd
import torch
from torch import Tensor

from cnflib.core._validation import check_choice, check_positive
from cnflib.core.cnf import CNF, SolverOptions
from cnflib.core.density import mean_nll, nll_evaluator
from cnflib.core.train import fit, flow_loss, late_mean
from cnflib.core.vector_fields import ConcatSquashMLP
from cnflib.data import images, toy
from cnflib.data.vectors import vector_splits
from cnflib.models.image_cnf import MultiscaleCNF
from cnflib.models.image_flow import ImageFlow, evaluate, image_flow_loss
from cnflib.rnode.regularizers import rnode_regularizers
from cnflib.rnode.straightness import kinetic_ratio, straightness

IMAGE_SETS: dict[str, Callable[[str], images.ImageSplit]] = {
    "digits": images.digits, "mnist": images.mnist, "cifar10": images.cifar10}


def fixed_steps(solver: str, T: float, step_size: Optional[float]) -> int:
    """Number of equal steps over [0, T] of a fixed-step ``solver`` with ``step_size`` (rounded to
    the nearest count, at least 1); 8 (the CNF default, unused) for an adaptive solver."""
    if SolverOptions(solver).adaptive:
        return 8
    if step_size is None:
        raise ValueError(f"a fixed-step solver ({solver!r}) needs step_size=, e.g. 0.25 (RNODE's MNIST setting)")
    check_positive("step_size", step_size, "the fixed-step solver's step, e.g. 0.25")
    return max(1, round(T / step_size))


def training_sensitivity(solver: str, sensitivity: Optional[str]) -> str:
    """The gradient method of a run: ``sensitivity`` if given, else backpropagation through the steps
    (``"autograd"``: the exact gradient of the discretized loss) for a fixed-step solver and the adjoint
    for an adaptive one (FFJORD's)."""
    if sensitivity is not None:
        return sensitivity
    return "adjoint" if SolverOptions(solver).adaptive else "autograd"


def count_backward(history: pd.DataFrame, sensitivity: str) -> pd.DataFrame:
    """Backpropagation through a solve takes one vector-Jacobian product of the field per forward
    evaluation (the adjoint's backward NFE counts the same products): with ``"autograd"`` the history's
    ``nfe_backward`` (0 from the counter, which sees no backward solve) becomes ``nfe_forward``, so that
    training NFE compare across gradient methods."""
    if sensitivity == "autograd":
        history = history.copy()
        history["nfe_backward"] = history["nfe_forward"]
    return history


def validation_points(dataset: str, n: int, seed: int = 0) -> Tensor:
    """``n`` validation points [n, D] of a vector set: a toy set drawn from its own generator
    (``seed + 20_000``; train and test use ``seed`` and ``seed + 10_000``), a tabular set's
    validation split (its first ``n`` rows)."""
    if dataset in toy.NAMES:
        return toy.sample(dataset, n, torch.Generator().manual_seed(seed + 20_000))
    from cnflib.data import tabular

    return tabular.load(dataset, "validation")[:n]


@dataclass
class FlowRun:
    """A trained flow, its training history (see :func:`cnflib.core.train.fit`; ``eval_*`` columns on
    ``x_val``), its test points and its evaluation tolerance (dopri5, exact trace)."""

    label: str
    model: CNF
    history: pd.DataFrame
    x_test: Tensor
    x_val: Optional[Tensor] = None
    eval_tol: float = 1e-5

    @property
    def total_nfe(self) -> int:
        """Forward plus backward function evaluations over the whole training run."""
        return int(self.history.nfe_forward.sum() + self.history.nfe_backward.sum())


def train_flow(dataset: str, *, kinetic: float = 0.0, jacobian: float = 0.0, steps: int = 500,
               hidden: Sequence[int] = (32, 32, 32), activation: str = "tanh", trace: str = "exact",
               T: float = 1.0, tol: float = 1e-5, eval_tol: float = 1e-6, batch_size: int = 256, lr: float = 3e-3,
               seed: int = 0, n_train: int = 20_000, n_test: int = 2_000, n_val: int = 0, eval_every: int = 0,
               solver: str = "dopri5", step_size: Optional[float] = None, sensitivity: Optional[str] = None,
               label: Optional[str] = None, **fit_options) -> FlowRun:
    """Train a CNF on ``dataset`` (see :func:`cnflib.data.vectors.vector_splits`) with RNODE weights
    ``kinetic``, ``jacobian`` (both 0: vanilla FFJORD), solved in training by ``solver`` (dopri5 at
    ``tol``, or a fixed-step solver with ``step_size``) with ``sensitivity`` (default: see
    :func:`training_sensitivity`; backward NFE counted by :func:`count_backward`). The history gets
    ``eval_nll`` / ``eval_nfe`` (dopri5 at ``eval_tol``, the exact trace if ``trace="exact"``) every
    ``eval_every`` steps and at the end, on ``n_val`` validation points (:func:`validation_points`)
    or, with ``n_val=0``, on the test points. ``fit_options`` go to :func:`cnflib.core.train.fit`."""
    torch.manual_seed(seed)
    sensitivity = training_sensitivity(solver, sensitivity)
    x_train, x_test = vector_splits(dataset, n_train, n_test, seed)
    x_val = validation_points(dataset, n_val, seed) if n_val else None
    regularizers, weights = rnode_regularizers(kinetic, jacobian)
    model = CNF(ConcatSquashMLP(x_train.shape[1], tuple(hidden), activation), trace=trace, T=T, atol=tol, rtol=tol,
                solver=solver, steps=fixed_steps(solver, T, step_size), sensitivity=sensitivity,
                regularizers=regularizers)

    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    evaluator = nll_evaluator(x_test if x_val is None else x_val, solver="dopri5", atol=eval_tol, rtol=eval_tol)
    history = fit(model, x_train, steps=steps, loss=flow_loss(weights), batch_size=batch_size, lr=lr,
                  weight_decay=1e-5, seed=seed, evaluate=evaluator, eval_every=eval_every,
                  progress=False, desc=f"{dataset} {label}", **fit_options)
    return FlowRun(label, model, count_backward(history, sensitivity), x_test, x_val, eval_tol)


def cost_to_reach(history: pd.DataFrame, target: float, column: str = "eval_nll") -> dict[str, float]:
    """Training cost up to the first evaluation with ``history[column] <= target``: the step,
    cumulative wall and CPU seconds and training NFE (forward + backward), all NaN if never reached;
    plus the best value of ``column``."""
    evals = history[column].dropna()
    hit = evals[evals <= target]
    best = float(evals.min()) if len(evals) else math.nan
    if hit.empty:
        return {"best": best, "steps": math.nan, "seconds": math.nan, "cpu_seconds": math.nan, "nfe_total": math.nan}
    upto = history.loc[:hit.index[0]]
    return {"best": best, "steps": float(hit.index[0]), "seconds": float(upto.seconds.iloc[-1]),
            "cpu_seconds": float(upto.cpu_seconds.iloc[-1]),
            "nfe_total": float(upto.nfe_forward.sum() + upto.nfe_backward.sum())}


@torch.no_grad()
def path_measures(model: CNF, x: Tensor, grid: int = 65) -> dict[str, float]:
    """Mean straightness and kinetic ratio (see :mod:`cnflib.rnode.straightness`) of the paths from
    ``x`` [n, D] over [0, T], sampled by rk4 with ``grid - 1`` steps."""
    t_span = torch.linspace(0.0, model.T, grid)
    with model.solver_options(solver="rk4", steps=grid - 1):
        traj = model.trajectory(x, t_span)
    return {"straightness": straightness(traj).mean().item(), "kinetic_ratio": kinetic_ratio(traj).mean().item()}


def summarize(runs: Sequence[FlowRun], eval_tol: Optional[float] = None, cheap: Optional[dict] = None,
              n_paths: int = 500) -> pd.DataFrame:
    """One row per run: final test NLL (dopri5 at ``eval_tol``, default the run's) and its NFE, the
    test NLL under the run's own training solver (``train_solver_nll``) and its gap to the exact one
    (``solver_gap``), the NLL under a cheap fixed-step solve (default rk4 with 4 steps), total
    training NFE (forward, backward), late forward NFE per iteration (last 10%), training wall and
    CPU seconds and path straightness."""
    cheap = cheap or {"solver": "rk4", "steps": 4}
    rows = []
    for run in runs:
        h = run.history
        tol = run.eval_tol if eval_tol is None else eval_tol
        nll, nfe = mean_nll(run.model, run.x_test, solver="dopri5", atol=tol, rtol=tol)
        own = mean_nll(run.model, run.x_test)[0]
        rows.append({
            "run": run.label, "test_nll": nll, "eval_nfe": nfe, "train_solver_nll": own, "solver_gap": own - nll,
            "cheap_nll": mean_nll(run.model, run.x_test, **cheap)[0],
            "nfe_forward_total": int(h.nfe_forward.sum()), "nfe_backward_total": int(h.nfe_backward.sum()),
            "nfe_total": run.total_nfe, "late_nfe_forward": late_mean(h.nfe_forward),
            "seconds": float(h.seconds.iloc[-1]), "cpu_seconds": float(h.cpu_seconds.iloc[-1]),
            **path_measures(run.model, run.x_test[:n_paths]),
        })
    return pd.DataFrame(rows).set_index("run")


@contextlib.contextmanager
def solved_by(model: ImageFlow, **options) -> Iterator[ImageFlow]:
    """Temporarily solve every block of an image flow with ``options`` (e.g. ``solver="dopri5",
    atol=1e-5, rtol=1e-5``: the exact-solve evaluation of a flow trained with RK4)."""
    with contextlib.ExitStack() as stack:
        for block in model.flow.blocks:
            stack.enter_context(block.solver_options(**options))
        yield model


def exact_image_evaluation(model: ImageFlow, data: images.ImageSplit, tol: float, seed: int = 0) -> dict[str, float]:
    """Bits/dim and forward NFE per batch of ``data`` with every block solved by dopri5 at ``tol``
    (Hutchinson trace, one fixed dequantization and noise by ``seed``): see
    :func:`cnflib.models.image_flow.evaluate`."""
    with solved_by(model, solver="dopri5", atol=tol, rtol=tol):
        return evaluate(model, data, None, seed)


@dataclass
class ImageFlowRun:
    """A trained image flow, its history (``eval_bpd`` / ``eval_nfe``: validation split, dopri5 at
    ``eval_tol``), its test split and its evaluation tolerance."""

    label: str
    model: ImageFlow
    history: pd.DataFrame
    test: images.ImageSplit
    eval_tol: float = 1e-5
    seed: int = 0

    @property
    def total_nfe(self) -> int:
        return int(self.history.nfe_forward.sum() + self.history.nfe_backward.sum())


def _subset(split: images.ImageSplit, n: Optional[int], seed: int) -> images.ImageSplit:
    if n is None or n >= len(split):
        return split
    pick = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return images.ImageSplit(split.x[pick], split.y[pick], split.levels)


def train_image_flow(dataset: str, *, kinetic: float = 0.0, jacobian: float = 0.0, steps: int = 100,
                     scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16),
                     tol: float = 1e-5, eval_tol: float = 1e-5, batch_size: int = 64, lr: float = 1e-3,
                     seed: int = 0, n_test: Optional[int] = 500, n_val: Optional[int] = 500, eval_every: int = 0,
                     solver: str = "dopri5", step_size: Optional[float] = None, T: float = 1.0,
                     sensitivity: Optional[str] = None, label: Optional[str] = None, **fit_options) -> ImageFlowRun:
    """Train FFJORD's multiscale CNF (:class:`cnflib.models.image_flow.ImageFlow`: softplus,
    Hutchinson trace, N(0, I) base) on an image set (``digits``, ``mnist``, ``cifar10``)
    with RNODE weights ``kinetic``, ``jacobian`` (both 0: vanilla FFJORD), solved in training by
    ``solver`` (dopri5 at ``tol``, or fixed steps of ``step_size``) with ``sensitivity`` (see
    :func:`training_sensitivity` and :func:`count_backward`). The history's ``eval_bpd`` /
    ``eval_nfe``: ``n_val`` validation images (``None``: all), dopri5 at ``eval_tol``;
    :func:`summarize_images` scores the ``n_test`` test images the same way at the end."""
    load = IMAGE_SETS[check_choice("image set", dataset, IMAGE_SETS)]
    train = load("train")
    test, val = _subset(load("test"), n_test, seed), _subset(load("validation"), n_val, seed)
    regularizers, weights = rnode_regularizers(kinetic, jacobian)
    label = label or ("vanilla" if not weights else f"RNODE λK={kinetic:g} λJ={jacobian:g}")
    torch.manual_seed(seed)
    sensitivity = training_sensitivity(solver, sensitivity)
    flow = MultiscaleCNF(train.event_shape, scales, blocks_per_scale, tuple(hidden), trace="hutchinson", solver=solver,
                         steps=fixed_steps(solver, T, step_size), atol=tol, rtol=tol, sensitivity=sensitivity, T=T,
                         regularizers=list(regularizers))
    model = ImageFlow(flow, levels=train.levels)
    history = fit(model, (train.x.float(), train.y), steps=steps, loss=image_flow_loss(weights), batch_size=batch_size,
                  lr=lr, seed=seed, evaluate=lambda m: exact_image_evaluation(m, val, eval_tol, seed),
                  eval_every=eval_every, progress=False, desc=label, **fit_options)
    return ImageFlowRun(label, model, count_backward(history, sensitivity), test, eval_tol, seed)


@contextlib.contextmanager
def common_probes(seed: int) -> Iterator[None]:
    """Draw the Hutchinson probes of the solves inside from the global RNG reseeded by ``seed``, and restore
    its state after: two evaluations of the same model under it use the same probes (and, with
    :func:`cnflib.models.image_flow.evaluate`'s fixed dequantization, give the same figures)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def summarize_images(runs: Sequence[ImageFlowRun]) -> pd.DataFrame:
    """One row per image run: test bits/dim (dopri5 at the run's ``eval_tol``) and its NFE, the test
    bits/dim under the run's training solver and the gap, total training NFE, late forward NFE per
    iteration (last 10%), training wall and CPU seconds. Every evaluation draws its probes by
    :func:`common_probes` (the run's seed): the gap compares the two solves with the same probes, and two
    runs that trained the same model (e.g. RNODE at both weights 0 and vanilla) get the same row."""
    rows = []
    for run in runs:
        h = run.history
        with common_probes(run.seed):
            exact = exact_image_evaluation(run.model, run.test, run.eval_tol, run.seed)
        with common_probes(run.seed):
            own = evaluate(run.model, run.test, None, run.seed)["bpd"]
        rows.append({"run": run.label, "test_bpd": exact["bpd"], "eval_nfe": exact["nfe"], "train_solver_bpd": own,
                     "solver_gap": own - exact["bpd"], "nfe_total": run.total_nfe,
                     "late_nfe_forward": late_mean(h.nfe_forward),
                     "seconds": float(h.seconds.iloc[-1]), "cpu_seconds": float(h.cpu_seconds.iloc[-1])})
    return pd.DataFrame(rows).set_index("run")
