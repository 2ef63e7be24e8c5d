"""Curvature of the training loss with respect to the parameters (as PyHessian does).

Everything is built on Hessian-vector products ``v -> H v`` (Pearlmutter's double backward):

* ``λ_max`` by power iteration;
* ``tr(H)`` by Hutchinson's estimator ``E[vᵀ H v]`` with Rademacher ``v``;
* ``λ_min`` and the condition number ``κ = λ_max / λ_min⁺`` (smallest *positive* eigenvalue,
  as in Sparse Flows) from the Ritz values of a Lanczos run with full reorthogonalization
  (exact once the number of steps reaches the dimension).

For a pruned model the Hessian is taken over the remaining (unmasked) parameters only. For a
CNF the loss must be built with ``sensitivity="autograd"``: torchdyn's adjoint cannot build
a double-backward graph.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor, nn

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


@dataclass(frozen=True)
class HessianStats:
    """``lambda_max`` (power iteration), ``trace`` ± ``trace_stderr`` (Hutchinson), ``lambda_min``
    and ``lambda_min_positive`` (Lanczos Ritz values), ``condition = lambda_max / lambda_min_positive``,
    ``n`` = number of parameters."""

    lambda_max: float
    trace: float
    trace_stderr: float
    lambda_min: float
    lambda_min_positive: float
    condition: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"lambda_max": self.lambda_max, "trace": self.trace, "trace_stderr": self.trace_stderr,
                "lambda_min": self.lambda_min, "kappa": self.condition}


def hessian_stats(hvp: HVP, n: int, *, power_iters: int = 50, trace_samples: int = 50, lanczos_steps: int = 30,
                  positive_tol: float = 1e-3, seed: int = 0) -> HessianStats:
    """λ_max, tr(H), λ_min and κ of the operator ``hvp`` on R^n (see module docstring).

    ``λ_min⁺`` is the smallest Ritz value above ``positive_tol · λ_max`` (Ritz values near zero are
    not resolved by a short Lanczos run; the threshold keeps κ finite and comparable).
    """
    generator = torch.Generator().manual_seed(seed)
    lam_max, _ = power_iteration(hvp, n, power_iters, generator=generator)
    trace, stderr = hutchinson_trace(hvp, n, trace_samples, generator)
    ritz = lanczos(hvp, n, lanczos_steps, generator)
    top = max(lam_max, float(ritz.max()))
    positive = ritz[ritz > positive_tol * top]
    lam_pos = float(positive.min()) if len(positive) else float("nan")
    return HessianStats(top, trace, stderr, float(ritz.min()), lam_pos, top / lam_pos, n)


def flow_hessian(model: nn.Module, x: Tensor, **kwargs) -> HessianStats:
    """:func:`hessian_stats` of a CNF's mean NLL on data ``x`` [n, d] (e.g. ~10% of the training
    set, as in Sparse Flows), with backpropagation through the solver (autograd sensitivity)."""
    with model.solver_options(sensitivity="autograd"):
        hvp, n = loss_hvp(model, lambda: -model.log_prob(x).mean())
        return hessian_stats(hvp, n, **kwargs)
