"""Curvature of the training loss with respect to the parameters (as PyHessian does).

Everything is built on Hessian-vector products ``v -> H v`` (Pearlmutter's double backward), with
``H = ∇²_θ L(θ)`` [n, n] the Hessian of the scalar loss over the n remaining parameters:

* ``λ_max`` and ``λ_min`` (the extreme eigenvalues, Sparse Flows' curvature table) either

  - converged, by ARPACK's implicitly restarted Lanczos method (``scipy.sparse.linalg.eigsh`` on a
    ``LinearOperator`` of products, :func:`extreme_eigenvalues`): ``λ_max`` as the largest
    algebraic eigenvalue of H, then ``λ_min = λ_max − μ`` with ``μ`` the largest eigenvalue of the
    shifted operator ``λ_max I − H`` (positive semi-definite), each to a relative tolerance and in a
    bounded number of restarts, with the residual ``‖H u − λ u‖`` of the returned unit vector ``u``
    (for symmetric H some eigenvalue lies within it of ``λ``) and the number of products used; or
  - from a fixed number of power-iteration and Lanczos steps (the short default of :func:`hessian_stats`);

* ``tr(H)`` by Hutchinson's estimator ``tr(H) = E[vᵀ H v]`` with Rademacher ``v``, or by Hutch++
  (the top of the spectrum sketched exactly, Hutchinson on the rest), each with its standard error;
* the condition number ``κ = λ_max / λ_min⁺`` (``λ_min⁺`` the smallest *positive* eigenvalue, as in
  Sparse Flows) from the Ritz values of a Lanczos run with full reorthogonalization
  (exact once the number of steps reaches the dimension).

For a pruned model the Hessian is taken over the remaining (unmasked) parameters only. For a
CNF the loss must be built with ``sensitivity="autograd"``: torchdyn's adjoint cannot build
a double-backward graph. Products are taken on float32 vectors (the models' precision), so
eigenvalue tolerances below ~1e-5 (relative) are not meaningful.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import numpy as np
import pandas as pd
import torch
from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh
from torch import Tensor, nn

from cnflib.core._validation import check_choice, check_count, check_positive

HVP = Callable[[Tensor], Tensor]


def _parameters_and_masks(model: nn.Module) -> tuple[list[Tensor], list[Tensor]]:
    params, masks = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            base = name[: -len("_orig")] if name.endswith("_orig") else name
            mask = getattr(module, f"{base}_mask", None)
            params.append(p)
            masks.append(torch.ones_like(p, dtype=torch.bool) if mask is None else mask > 0)
    return params, masks


def loss_hvp(model: nn.Module, loss: Callable[[], Tensor]) -> tuple[HVP, int]:
    """Hessian-vector products of ``loss()`` (a scalar) w.r.t. the remaining parameters of ``model``.

    The loss and its gradient graph are built once; each product is one more backward pass.
    Returns ``(hvp, n)``: ``hvp(v)`` maps a vector [n] to ``H v`` [n], ``n`` the number of
    unmasked parameters.
    """
    params, masks = _parameters_and_masks(model)
    grads = torch.autograd.grad(loss(), params, create_graph=True)
    flat_grad = torch.cat([g[m] for g, m in zip(grads, masks)])
    sizes = [int(m.sum()) for m in masks]

    def hvp(v: Tensor) -> Tensor:
        hv = torch.autograd.grad(flat_grad, params, v.to(flat_grad), retain_graph=True, allow_unused=True)
        return torch.cat([(h if h is not None else torch.zeros_like(p))[m] for h, p, m in zip(hv, params, masks)]).detach()

    return hvp, sum(sizes)


def power_iteration(hvp: HVP, n: int, iters: int = 50, tol: float = 1e-4,
                    generator: Optional[torch.Generator] = None) -> tuple[float, Tensor]:
    """Largest-magnitude eigenvalue of H and its eigenvector [n] (PyHessian's ``eigenvalues``);
    stops when the Rayleigh quotient changes by less than ``tol`` relatively."""
    v = torch.randn(n, generator=generator, dtype=torch.float64)
    v = v / v.norm()
    eig = 0.0
    for _ in range(iters):
        hv = hvp(v.float()).double()
        new = float(v @ hv)
        v = hv / hv.norm().clamp_min(1e-30)
        if abs(new - eig) <= tol * (abs(eig) + 1e-12):
            eig = new
            break
        eig = new
    return eig, v


def hutchinson_trace(hvp: HVP, n: int, samples: int = 50, generator: Optional[torch.Generator] = None) -> tuple[float, float]:
    """tr(H) ≈ mean of vᵀHv over Rademacher ``v``: returns (estimate, its standard error)."""
    values = []
    for _ in range(samples):
        v = torch.randint(0, 2, (n,), generator=generator).float() * 2 - 1
        values.append(float(v @ hvp(v)))
    t = torch.tensor(values, dtype=torch.float64)
    return t.mean().item(), (t.std() / len(values) ** 0.5).item() if len(values) > 1 else float("nan")


def hutchpp_trace(hvp: HVP, n: int, samples: int = 50, generator: Optional[torch.Generator] = None) -> tuple[float, float]:
    """tr(H) by Hutch++ (Meyer, Musco, Musco & Woodruff 2021, Alg. 1) from ``samples`` products:
    returns (estimate, its standard error given the sketch).

    With ``r = samples // 3`` Rademacher columns ``S`` [n, r], ``Q = orth(H S)`` [n, r] captures the
    top of the spectrum, and with ``P = I − Q Qᵀ`` and ``m = samples − 2r`` Rademacher probes ``g``,

        tr(H) = tr(Qᵀ H Q) + tr(P H P) ≈ tr(Qᵀ H Q) + mean_g gᵀ P H P g,

    exact in its first term and unbiased in the second for any Q. Its variance,
    ``2(‖PHP‖_F² − Σ_i (PHP)_ii²) / m``, lacks the outliers that dominate Hutchinson's
    ``2(‖H‖_F² − Σ_i H_ii²) / samples`` for a network Hessian (a few large eigenvalues).
    The standard error is that of the probes' mean given Q (unbiased given Q, so valid for every Q);
    ``samples ≥ 3n`` gives the exact trace (standard error 0)."""
    samples = check_count("samples", samples, 3)
    r = min(samples // 3, n)
    sketch = torch.randint(0, 2, (n, r), generator=generator).double() * 2 - 1
    q, _ = torch.linalg.qr(torch.stack([hvp(sketch[:, j].float()).double() for j in range(r)], 1))
    top = sum(float(q[:, j] @ hvp(q[:, j].float()).double()) for j in range(r))
    if r == n:  # Q spans R^n: the trace is exact
        return top, 0.0
    values = []
    for _ in range(samples - 2 * r):
        g = torch.randint(0, 2, (n,), generator=generator).double() * 2 - 1
        g = g - q @ (q.T @ g)
        hg = hvp(g.float()).double()
        values.append(float(g @ (hg - q @ (q.T @ hg))))
    t = torch.tensor(values, dtype=torch.float64)
    return top + t.mean().item(), (t.std() / len(values) ** 0.5).item() if len(values) > 1 else float("nan")


def lanczos(hvp: HVP, n: int, steps: int = 30, generator: Optional[torch.Generator] = None) -> Tensor:
    """Ritz values [min(steps, n)] of H from Lanczos with full reorthogonalization (float64)."""
    steps = min(steps, n)
    basis = torch.zeros(steps, n, dtype=torch.float64)
    v = torch.randn(n, generator=generator, dtype=torch.float64)
    basis[0] = v / v.norm()
    alpha, beta = torch.zeros(steps, dtype=torch.float64), torch.zeros(steps, dtype=torch.float64)
    for j in range(steps):
        w = hvp(basis[j].float()).double()
        alpha[j] = w @ basis[j]
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)  # full reorthogonalization (twice)
        w = w - basis[: j + 1].T @ (basis[: j + 1] @ w)
        if j + 1 < steps:
            beta[j] = w.norm()
            if beta[j] < 1e-10:  # invariant subspace found: the Ritz values are exact
                steps = j + 1
                break
            basis[j + 1] = w / beta[j]
    tri = torch.diag(alpha[:steps]) + torch.diag(beta[: steps - 1], 1) + torch.diag(beta[: steps - 1], -1)
    return torch.linalg.eigvalsh(tri)


EIGENSOLVERS: tuple[str, ...] = ("lanczos", "eigsh")
TRACE_ESTIMATORS: tuple[str, ...] = ("hutchinson", "hutch++")


class _CountedOperator:
    """``hvp`` as a float64 matrix-vector product ``x [n] -> H x [n]`` for scipy (``shift`` turns it into
    ``shift·x − H x``), counting its calls and keeping the unit vector with the best Rayleigh quotient
    (largest ``xᵀ A x / xᵀ x`` of the operator A applied), a fallback if ARPACK does not converge."""

    def __init__(self, hvp: HVP, n: int, shift: Optional[float] = None) -> None:
        self.hvp, self.n, self.shift, self.calls = hvp, n, shift, 0
        self.best = (-math.inf, math.inf)  # (Rayleigh quotient of A, residual ‖A x − q x‖ / ‖x‖)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        v = np.asarray(x, dtype=np.float64).reshape(-1)
        hv = self.hvp(torch.from_numpy(v.copy()).float()).double().numpy()
        ax = hv if self.shift is None else self.shift * v - hv
        norm2 = float(v @ v)
        if norm2 > 0:
            q = float(v @ ax) / norm2
            if q > self.best[0]:
                self.best = (q, float(np.linalg.norm(ax - q * v)) / math.sqrt(norm2))
        return ax

    def operator(self) -> LinearOperator:
        return LinearOperator((self.n, self.n), matvec=self, dtype=np.float64)


@dataclass(frozen=True)
class ExtremeEigenvalues:
    """The extreme eigenvalues of a symmetric operator H on R^n from :func:`extreme_eigenvalues`.

    ``lambda_max``, ``lambda_min``: the estimates; ``lambda_max_residual``, ``lambda_min_residual``:
    ``‖H u − λ u‖`` of the unit vector ``u`` behind each estimate (an eigenvalue of H lies within it:
    for symmetric H, ``min_i |λ_i − λ| ≤ ‖H u − λ u‖``); ``matvecs``: Hessian-vector products used;
    ``converged``: whether ARPACK met ``tol`` for both ends within ``maxiter`` restarts (if not, the
    estimates are the best Rayleigh quotients seen, lower resp. upper bounds of λ_max resp. λ_min)."""

    lambda_max: float
    lambda_min: float
    lambda_max_residual: float
    lambda_min_residual: float
    matvecs: int
    converged: bool


def _largest(op: _CountedOperator, *, tol: float, maxiter: int, ncv: int, v0: np.ndarray) -> tuple[float, float, bool]:
    """Largest algebraic eigenvalue of ``op`` by eigsh: (value, residual of its unit vector, converged)."""
    try:
        values, vectors = eigsh(op.operator(), k=1, which="LA", tol=tol, maxiter=maxiter, ncv=ncv, v0=v0)
    except ArpackNoConvergence as error:
        if len(error.eigenvalues):
            values, vectors = error.eigenvalues, error.eigenvectors
        else:
            return op.best[0], op.best[1], False
        converged = False
    else:
        converged = True
    u = vectors[:, 0] / np.linalg.norm(vectors[:, 0])
    value = float(values[0])
    return value, float(np.linalg.norm(op(u) - value * u)), converged


def extreme_eigenvalues(hvp: HVP, n: int, *, tol: float = 1e-3, maxiter: int = 30, ncv: Optional[int] = None,
                        seed: int = 0) -> ExtremeEigenvalues:
    """λ_max and λ_min of the symmetric operator ``hvp`` ([n] -> [n], e.g. :func:`loss_hvp`), converged.

    Two runs of scipy's ``eigsh`` (ARPACK's implicitly restarted Lanczos method) on a
    ``LinearOperator`` of products:

    1. ``λ_max``: the largest algebraic eigenvalue of H (``which="LA"``);
    2. ``λ_min = λ_max − μ`` with ``μ`` the largest eigenvalue of ``λ_max I − H``, whose spectrum
       ``λ_max − λ_i ≥ 0`` has the sought end on top. ARPACK's stopping rule is relative to the
       eigenvalue it computes (``|error| ≤ tol·|λ|``); asking for ``which="SA"`` directly makes that
       rule as strict as ``λ_min`` is close to 0 (a near-singular network Hessian), down to accuracies
       that float32 products may not deliver, whereas ``μ ≥ λ_max − λ_min`` measures the error against
       the width of the spectrum. (On a 3,000-dimensional spectrum of 5 and a cluster in
       [−1e−5, 1e−3] with float32-like noise, ``which="SA"`` alone took 561 products, both ends here 44.)

    Arguments:
        hvp: ``v [n] -> H v [n]`` for a symmetric H (called on float32 vectors).
        n: the dimension.
        tol: ARPACK's relative tolerance of each eigenvalue (above float32 noise, ~1e-5).
        maxiter: bound on ARPACK's restarts per run; each restart costs at most ``ncv − 1``
            products, so a run uses at most about ``ncv·(maxiter + 1)`` (it stops earlier once converged).
        ncv: Lanczos vectors kept between restarts (default ``min(n, 20)``); if ``ncv ≥ n`` the
            operator is formed from n products and diagonalized exactly instead.
        seed: seed of the two starting vectors.

    Returns:
        :class:`ExtremeEigenvalues` with the residual bounds, the number of products and convergence.
    """
    n = check_count("n", n)
    tol, maxiter = check_positive("tol", tol), check_count("maxiter", maxiter)
    ncv = min(n, 20) if ncv is None else check_count("ncv", ncv, 2)
    if ncv >= n:  # small: the exact spectrum from n products
        op = _CountedOperator(hvp, n)
        dense = np.stack([op(e) for e in np.eye(n)], 1)
        eig, vec = np.linalg.eigh(0.5 * (dense + dense.T))
        res = [float(np.linalg.norm(dense @ vec[:, j] - eig[j] * vec[:, j])) for j in (-1, 0)]
        return ExtremeEigenvalues(float(eig[-1]), float(eig[0]), res[0], res[1], op.calls, True)
    rng = np.random.default_rng(seed)
    top = _CountedOperator(hvp, n)
    lam_max, res_max, ok_max = _largest(top, tol=tol, maxiter=maxiter, ncv=ncv, v0=rng.standard_normal(n))
    shifted = _CountedOperator(hvp, n, shift=lam_max)
    mu, res_min, ok_min = _largest(shifted, tol=tol, maxiter=maxiter, ncv=ncv, v0=rng.standard_normal(n))
    if not (ok_max and ok_min):
        warnings.warn(f"eigsh did not reach tol={tol:g} within maxiter={maxiter} restarts "
                      f"(λ_max {'' if ok_max else 'not '}converged, λ_min {'' if ok_min else 'not '}converged); "
                      "returning the best estimates with their residuals", RuntimeWarning, stacklevel=2)
    return ExtremeEigenvalues(lam_max, lam_max - mu, res_max, res_min, top.calls + shifted.calls, ok_max and ok_min)


@dataclass(frozen=True)
class HessianStats:
    """Curvature summary of :func:`hessian_stats`.

    ``lambda_max``, ``lambda_min``: extreme eigenvalues (how they are found: ``eigensolver`` of
    :func:`hessian_stats`); ``trace`` ± ``trace_stderr``: the estimate of tr(H) (``trace_estimator``)
    and its standard error; ``lambda_min_positive``: the smallest Lanczos Ritz value above the threshold;
    ``condition = lambda_max / lambda_min_positive`` (κ); ``n``: number of parameters;
    ``lambda_max_residual``, ``lambda_min_residual``: ``‖H u − λ u‖`` behind each extreme eigenvalue
    (NaN for the ``"lanczos"`` solver); ``matvecs``: Hessian-vector products used in all;
    ``converged``: whether eigsh met its tolerance (None for ``"lanczos"``, which runs fixed steps)."""

    lambda_max: float
    trace: float
    trace_stderr: float
    lambda_min: float
    lambda_min_positive: float
    condition: float
    n: int
    lambda_max_residual: float = math.nan
    lambda_min_residual: float = math.nan
    matvecs: int = 0
    converged: Optional[bool] = None

    def as_dict(self, detail: bool = False) -> dict[str, float]:
        """``lambda_max``, ``trace``, ``trace_stderr``, ``lambda_min``, ``kappa``; with ``detail``
        also the residuals, ``matvecs`` and ``converged``."""
        out = {"lambda_max": self.lambda_max, "trace": self.trace, "trace_stderr": self.trace_stderr,
               "lambda_min": self.lambda_min, "kappa": self.condition}
        if detail:
            out.update(lambda_max_residual=self.lambda_max_residual, lambda_min_residual=self.lambda_min_residual,
                       matvecs=float(self.matvecs),
                       converged=float("nan") if self.converged is None else float(self.converged))
        return out


def hessian_stats(hvp: HVP, n: int, *, power_iters: int = 50, trace_samples: int = 50, lanczos_steps: int = 30,
                  positive_tol: float = 1e-3, seed: int = 0, eigensolver: str = "lanczos", tol: float = 1e-3,
                  maxiter: int = 30, ncv: Optional[int] = None, trace_estimator: str = "hutchinson") -> HessianStats:
    """λ_max, λ_min, tr(H) ± se and κ of the symmetric operator ``hvp`` on R^n (see module docstring).

    ``eigensolver`` picks how the extreme eigenvalues are found:

    * ``"lanczos"`` (default; fixed cost): ``λ_max`` is the larger of the power-iteration Rayleigh
      quotient (``power_iters`` steps) and the top Ritz value of a ``lanczos_steps``-step Lanczos run,
      ``λ_min`` the bottom Ritz value. Both are Rayleigh quotients, so ``λ_max`` is a lower bound of
      the true one (and ``λ_min`` an upper bound), tight only once the runs converge; power
      iteration alone finds the largest-*magnitude* eigenvalue, which is ``λ_min`` when
      ``|λ_min| > λ_max``, hence the maximum with the Ritz value.
    * ``"eigsh"``: converged by :func:`extreme_eigenvalues` (``tol``, ``maxiter``, ``ncv``), with
      residuals and a convergence flag; no power iteration.

    In both, ``tr(H)`` is estimated from ``trace_samples`` products by ``trace_estimator``:
    ``"hutchinson"`` (default, :func:`hutchinson_trace`) or ``"hutch++"`` (:func:`hutchpp_trace`, far
    smaller standard error when a few eigenvalues dominate), and
    ``λ_min⁺`` the smallest Lanczos Ritz value above ``positive_tol · λ_max`` (Ritz values near zero
    are not resolved by a short Lanczos run; the threshold keeps κ finite and comparable).
    ``matvecs`` counts every product used.
    """
    check_choice("eigensolver", eigensolver, EIGENSOLVERS)
    check_choice("trace estimator", trace_estimator, TRACE_ESTIMATORS)
    calls = [0]

    def counted(v: Tensor) -> Tensor:
        calls[0] += 1
        return hvp(v)

    generator = torch.Generator().manual_seed(seed)
    extremes: Optional[ExtremeEigenvalues] = None
    if eigensolver == "eigsh":
        extremes = extreme_eigenvalues(counted, n, tol=tol, maxiter=maxiter, ncv=ncv, seed=seed)
    else:
        lam_power, _ = power_iteration(counted, n, power_iters, generator=generator)
    trace, stderr = (hutchinson_trace if trace_estimator == "hutchinson" else hutchpp_trace)(counted, n, trace_samples,
                                                                                           generator)
    ritz = lanczos(counted, n, lanczos_steps, generator)
    if extremes is not None:
        top, bottom = extremes.lambda_max, extremes.lambda_min
        residuals, converged = (extremes.lambda_max_residual, extremes.lambda_min_residual), extremes.converged
    else:
        top, bottom = max(lam_power, float(ritz.max())), float(ritz.min())
        residuals, converged = (math.nan, math.nan), None
    positive = ritz[ritz > positive_tol * top]
    lam_pos = float(positive.min()) if len(positive) else float("nan")
    return HessianStats(top, trace, stderr, bottom, lam_pos, top / lam_pos, n, *residuals, calls[0], converged)


def spectrum_convergence(hvp: HVP, n: int, *, tols: Sequence[float] = (1e-2, 1e-3, 1e-4),
                         probes: Sequence[int] = (50, 100, 200), maxiter: int = 30,
                         trace_estimator: str = "hutch++", seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Whether the curvature estimates are stable as the solver's accuracy and the probes grow.

    Returns two tables: ``eigen``, one row per ``tol`` (:func:`extreme_eigenvalues`: ``lambda_max``,
    ``lambda_min``, their residuals, ``matvecs``, ``converged``), and ``trace``, one row per probe
    count (``trace``, ``trace_stderr``, ``matvecs``; independent probes of seed ``seed + row``), by
    ``trace_estimator`` (``"hutchinson"`` or ``"hutch++"``). Stable estimates change by less than
    their residuals resp. standard errors from row to row.
    """
    check_choice("trace estimator", trace_estimator, TRACE_ESTIMATORS)
    estimate = hutchinson_trace if trace_estimator == "hutchinson" else hutchpp_trace
    eigen = []
    for tol in tols:
        with warnings.catch_warnings(record=True):  # non-convergence is a column here
            warnings.simplefilter("always")
            result = extreme_eigenvalues(hvp, n, tol=tol, maxiter=maxiter, seed=seed)
        eigen.append({"tol": tol, "lambda_max": result.lambda_max, "lambda_max_residual": result.lambda_max_residual,
                      "lambda_min": result.lambda_min, "lambda_min_residual": result.lambda_min_residual,
                      "matvecs": result.matvecs, "converged": result.converged})
    traces = []
    for row, count in enumerate(probes):
        trace, stderr = estimate(hvp, n, count, torch.Generator().manual_seed(seed + row))
        traces.append({"probes": count, "trace": trace, "trace_stderr": stderr, "matvecs": count})
    return pd.DataFrame(eigen).set_index("tol"), pd.DataFrame(traces).set_index("probes")


def flow_hessian(model: nn.Module, x: Tensor, **kwargs) -> HessianStats:
    """:func:`hessian_stats` of a CNF's mean NLL on data ``x`` [n, d] (e.g. ~10% of the training
    set, as in Sparse Flows), with backpropagation through the solver (autograd sensitivity).
    ``kwargs`` go to :func:`hessian_stats` (e.g. ``eigensolver="eigsh"``)."""
    with model.solver_options(sensitivity="autograd"):
        hvp, n = loss_hvp(model, lambda: -model.log_prob(x).mean())
        return hessian_stats(hvp, n, **kwargs)
