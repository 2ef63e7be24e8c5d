"""Continuous normalizing flows (FFJORD) on torchdyn's ``NeuralODE``.

One augmented solve integrates, for each sample,

    d/dt [ z, l, r_1 .. r_k ] = [ f(t, z), tr(df/dz), s * R_1(t, z, f), .., s * R_k(...) ]

from ``z(0) = x`` to ``T``, so that ``log p(x) = log p_base(z(T)) + l(T)`` (p_base = N(0, I) by default)
(instantaneous change of variables, FFJORD Eq. 4). The optional regularizer states ``r_j``
(e.g. RNODE's kinetic energy and Jacobian norm) ride along in the same solve. They are
integrated in a coordinate scaled by ``s = 1e-6`` and the tolerances are rescaled by
``sqrt((D + 1) / (D + 1 + k))``, which together keep them out of torchdyn's RMS error norm:
the step sizes are those of the unregularized solve (a seminorm, as in the RNODE code).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, replace
from typing import Iterator, Optional, Protocol, Sequence, Union

import torch
from torch import Tensor, nn
from torchdyn.core import NeuralODE

from cnflib.core._validation import check_batch, check_choice, check_count, check_positive, check_time
from cnflib.core.distributions import StandardNormal
from cnflib.core.flow import FlowOutput
from cnflib.core.odes import ADAPTIVE_SOLVERS, SENSITIVITIES, SOLVERS, CountingField, neural_ode, solve

TRACES: tuple[str, ...] = ("exact", "hutchinson")
NOISES: tuple[str, ...] = ("gaussian", "rademacher")
REGULARIZER_SCALE = 1e-6


class Regularizer(Protocol):
    """A quantity integrated along the flow as an extra state of the augmented solve.

    ``__call__(t, z, f, noise, vjp) -> Tensor[n]``: the integrand per sample, given the state
    ``z`` [n, D], the field ``f`` [n, D], the Hutchinson noise ``noise`` [n, D] and the
    vector-Jacobian product ``vjp = noise^T df/dz`` [n, D] (``None`` unless ``needs_vjp``).
    """

    name: str
    needs_vjp: bool

    def __call__(self, t: Tensor, z: Tensor, f: Tensor, noise: Tensor, vjp: Optional[Tensor]) -> Tensor: ...


def sample_noise(kind: str, like: Tensor) -> Tensor:
    """Hutchinson probe vectors with E[e e^T] = I: Gaussian or Rademacher, shaped like ``like``."""
    if check_choice("noise", kind, NOISES) == "gaussian":
        return torch.randn_like(like)
    return torch.randint_like(like, 0, 2) * 2 - 1


def exact_divergence(f: Tensor, z: Tensor, create_graph: bool) -> Tensor:
    """tr(df/dz) by one backward pass per dimension. f, z: [n, D] -> [n]."""
    return sum(
        torch.autograd.grad(f[:, i].sum(), z, create_graph=create_graph, retain_graph=True)[0][:, i]
        for i in range(z.shape[1])
    )


class CNFDynamics(CountingField):
    """The augmented vector field of a CNF (see module docstring).

    Called on a state of width ``D`` (sampling: the field alone) or ``D + 1 + k`` (density:
    field, divergence and ``k`` regularizers). ``event_shape`` is the shape of one sample; the
    vector field sees states of shape [n, *event_shape].

    The divergence comes from forward-mode tangents when the vector field has
    ``jvp(t, z, v) -> (f, (df/dz) v)`` (:class:`~cnflib.core.ConcatSquashMLP`,
    :class:`~cnflib.models.image_cnf.ConvODENet`): the exact trace as ``sum_i e_i^T (df/dz) e_i``
    over the basis vectors, at most ``EXACT_TANGENT_ROWS`` stacked rows per pass, and Hutchinson's
    as ``eps^T ((df/dz) eps)``. Otherwise, and for Hutchinson's estimator when a regularizer needs
    ``eps^T df/dz``, it comes from backward passes.
    """

    EXACT_TANGENT_ROWS = 8192  # tangent rows (basis vectors x samples) per forward-mode pass

    def __init__(self, vector_field: nn.Module, event_shape: tuple[int, ...], trace: str, noise: str,
                 regularizers: Sequence[Regularizer], max_nfe: int) -> None:
        super().__init__(max_nfe)
        self.vector_field = vector_field
        self.event_shape = event_shape
        self.dim = math.prod(event_shape)
        self.trace = check_choice("trace estimator", trace, TRACES)
        self.noise_kind = check_choice("noise", noise, NOISES)
        self.regularizers = list(regularizers)
        self.noise: Optional[Tensor] = None  # drawn once per solve by the CNF

    @property
    def regularizers_need_vjp(self) -> bool:
        return any(r.needs_vjp for r in self.regularizers)

    @property
    def needs_noise(self) -> bool:
        return self.trace == "hutchinson" or self.regularizers_need_vjp

    def _field(self, t: Tensor, z: Tensor) -> Tensor:
        return self.vector_field(t, z.view(-1, *self.event_shape)).reshape(z.shape[0], self.dim)

    def _field_jvp(self, t: Tensor, z: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        """f [n, D] and (df/dz) v [k, n, D] for tangents v [k, n, D]."""
        n, k = z.shape[0], v.shape[0]
        f, jv = self.vector_field.jvp(t, z.view(n, *self.event_shape), v.reshape(k, n, *self.event_shape))
        return f.reshape(n, self.dim), jv.reshape(k, n, self.dim)

    def _forward_mode_divergence(self, t: Tensor, z: Tensor) -> tuple[Tensor, Tensor]:
        """(f [n, D], divergence [n]) from tangents: the basis (exact) or the noise (Hutchinson)."""
        n = z.shape[0]
        if self.trace == "hutchinson":
            f, jv = self._field_jvp(t, z, self.noise[None])
            return f, (jv[0] * self.noise).sum(1)
        basis = torch.eye(self.dim, dtype=z.dtype, device=z.device)
        chunk = max(1, self.EXACT_TANGENT_ROWS // n)
        div = 0
        for start in range(0, self.dim, chunk):
            e = basis[start:start + chunk, None, :].expand(-1, n, -1)
            f, jv = self._field_jvp(t, z, e)
            div = div + torch.diagonal(jv[:, :, start:start + chunk], dim1=0, dim2=2).sum(1)
        return f, div

    def forward(self, t: Tensor, state: Tensor, args: Optional[dict] = None) -> Tensor:
        self.tick()
        if state.shape[1] == self.dim:
            return self._field(t, state)
        create_graph = torch.is_grad_enabled()
        forward_mode = hasattr(self.vector_field, "jvp") and not (self.trace == "hutchinson" and self.regularizers_need_vjp)
        backward_passes = self.regularizers_need_vjp or not forward_mode
        with torch.enable_grad() if backward_passes else contextlib.nullcontext():
            z = state[:, : self.dim]
            if backward_passes and not z.requires_grad:
                z = z.detach().requires_grad_(True)
            f, div = self._forward_mode_divergence(t, z) if forward_mode else (self._field(t, z), None)
            vjp = None
            if self.trace == "hutchinson" and not forward_mode or self.regularizers_need_vjp:
                vjp = torch.autograd.grad(f, z, self.noise, create_graph=create_graph, retain_graph=True)[0]
            if div is None:
                div = exact_divergence(f, z, create_graph) if self.trace == "exact" else (vjp * self.noise).sum(1)
            regs = [REGULARIZER_SCALE * r(t, z, f, self.noise, vjp)[:, None] for r in self.regularizers]
        out = torch.cat([f, div[:, None], *regs], 1)
        return out if create_graph else out.detach()


@dataclass(frozen=True)
class SolverOptions:
    """How a CNF's ODEs are solved. ``atol``/``rtol`` are ignored by fixed-step solvers,
    which take ``steps`` equal steps over [0, T]."""

    solver: str = "dopri5"
    atol: float = 1e-5
    rtol: float = 1e-5
    sensitivity: str = "adjoint"
    steps: int = 8

    def __post_init__(self) -> None:
        check_choice("solver", self.solver, SOLVERS)
        check_choice("sensitivity", self.sensitivity, SENSITIVITIES)
        check_positive("atol", self.atol, "the solver's absolute tolerance, e.g. 1e-5")
        check_positive("rtol", self.rtol, "the solver's relative tolerance, e.g. 1e-5")
        check_count("steps", self.steps)

    @property
    def adaptive(self) -> bool:
        return self.solver in ADAPTIVE_SOLVERS


class CNF(nn.Module):
    """A continuous normalizing flow (FFJORD): data ``x`` at t=0, Gaussian latent at t=T.

    Arguments:
        vector_field: ``f(t, z)`` mapping [n, *shape] -> [n, *shape].
        dim: the shape of one sample (int or tuple); default ``vector_field.dim``.
        trace: "exact" (all D basis vectors) or "hutchinson" (one random projection), see :class:`CNFDynamics`.
        noise: Hutchinson probe distribution, "gaussian" or "rademacher"; drawn once per solve.
        solver, atol, rtol, sensitivity, steps: see :class:`SolverOptions`.
        T: integration time.
        regularizers: quantities integrated in the same solve (see :class:`Regularizer`).
        max_nfe: step budget of one solve; beyond it :class:`~cnflib.core.odes.StepBudgetExceeded`.
        base: the base distribution at t=T (default :class:`~cnflib.core.distributions.StandardNormal`).
    """

    def __init__(self, vector_field: nn.Module, dim: Union[int, Sequence[int], None] = None, *,
                 trace: str = "exact", noise: str = "gaussian", solver: str = "dopri5",
                 atol: float = 1e-5, rtol: float = 1e-5, sensitivity: str = "adjoint", steps: int = 8,
                 T: float = 1.0, regularizers: Sequence[Regularizer] = (), max_nfe: int = 10_000,
                 base: Optional[nn.Module] = None) -> None:
        super().__init__()
        dim = getattr(vector_field, "dim", None) if dim is None else dim
        if dim is None:
            raise ValueError("pass dim= (the vector field has no .dim attribute)")
        shape = (dim,) if isinstance(dim, int) else tuple(dim)
        self.dynamics = CNFDynamics(vector_field, shape, trace, noise, regularizers, max_nfe)
        self.options = SolverOptions(solver, atol, rtol, sensitivity, steps)
        self.T = check_time(T)
        check_count("max_nfe", max_nfe)
        self.base = StandardNormal(shape) if base is None else base
        self._odes: dict[tuple, NeuralODE] = {}

    def __getstate__(self) -> dict:
        """Copies and pickles leave out the cached torchdyn solvers (rebuilt on first use)."""
        state = self.__dict__.copy()
        state["_odes"] = {}
        return state

    # -- settings -------------------------------------------------------------------------
    @property
    def vector_field(self) -> nn.Module:
        return self.dynamics.vector_field

    @property
    def event_shape(self) -> tuple[int, ...]:
        return self.dynamics.event_shape

    @property
    def nfe_forward(self) -> int:
        """Function evaluations of the latest forward solve."""
        return self.dynamics.nfe_forward

    @property
    def nfe_backward(self) -> int:
        """Function evaluations of the latest adjoint (backward) solve; 0 with autograd."""
        return self.dynamics.nfe_backward

    @contextlib.contextmanager
    def solver_options(self, **overrides) -> Iterator["CNF"]:
        """Temporarily change solver settings, e.g. ``with cnf.solver_options(atol=1e-8, rtol=1e-8):``."""
        saved = self.options
        self.options = replace(saved, **overrides)
        try:
            yield self
        finally:
            self.options = saved

    @contextlib.contextmanager
    def trace_estimator(self, trace: str) -> Iterator["CNF"]:
        """Temporarily use another trace estimator, e.g. ``with cnf.trace_estimator("exact"):`` to
        evaluate a flow trained with Hutchinson's estimator by its exact likelihood."""
        saved = self.dynamics.trace
        self.dynamics.trace = check_choice("trace estimator", trace, TRACES)
        try:
            yield self
        finally:
            self.dynamics.trace = saved

    def _ode(self, options: SolverOptions, n_extra: int) -> NeuralODE:
        atol, rtol = options.atol, options.rtol
        if options.adaptive and n_extra > 1:  # keep the regularizer states out of the RMS error norm
            shrink = math.sqrt((self.dynamics.dim + 1) / (self.dynamics.dim + n_extra))
            atol, rtol = atol * shrink, rtol * shrink
        key = (options.solver, atol, rtol, options.sensitivity)
        if key not in self._odes:
            if len(self._odes) >= 16:  # sampled tolerances (learned by gates) must not grow it without bound
                self._odes.pop(next(iter(self._odes)))
            self._odes[key] = neural_ode(self.dynamics, options.solver, atol, rtol, options.sensitivity)
        return self._odes[key]

    def _checked(self, name: str, x: Tensor) -> bool:
        """Validate a batch and the time span before any solve; False for an empty batch."""
        check_time(self.T)
        ref = next(self.parameters(), None)
        check_batch(name, x, self.event_shape, None if ref is None else ref.dtype)
        return len(x) > 0

    def _t_span(self, start: float, end: float, options: SolverOptions) -> Tensor:
        return torch.linspace(start, end, 2 if options.adaptive else options.steps + 1)

    # -- density ------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> FlowOutput:
        """Push data to the latent space. x: [n, *shape] -> FlowOutput (z [n, *shape], delta_logp [n])."""
        if not self._checked("x", x):  # an empty batch: empty results, no solve
            empty = x.new_zeros(0)
            return FlowOutput(x, empty, {r.name: empty for r in self.dynamics.regularizers}, 0)
        n, dim = x.shape[0], self.dynamics.dim
        flat = x.reshape(n, dim)
        if self.dynamics.needs_noise:
            self.dynamics.noise = sample_noise(self.dynamics.noise_kind, flat)
        k = len(self.dynamics.regularizers)
        state = torch.cat([flat, flat.new_zeros(n, 1 + k)], 1)
        sol = solve(self._ode(self.options, 1 + k), self.dynamics, state, self._t_span(0.0, self.T, self.options))
        end = sol[-1]
        regs = {r.name: end[:, dim + 1 + j] / REGULARIZER_SCALE for j, r in enumerate(self.dynamics.regularizers)}
        return FlowOutput(end[:, :dim].reshape(x.shape), end[:, dim], regs, self.dynamics.nfe_forward)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats. x: [n, *shape] -> [n]."""
        return self.forward(x).log_prob(self.base)

    # -- sampling -----------------------------------------------------------------------------
    def inverse(self, z: Tensor) -> Tensor:
        """Map latents back to data by the reverse solve T -> 0. z: [n, *shape] -> [n, *shape].

        Gradients, if enabled, flow by backpropagation through the solver (torchdyn's adjoint
        does not support reversed time spans).
        """
        if not self._checked("z", z):
            return z
        options = replace(self.options, sensitivity="autograd")
        flat = z.reshape(z.shape[0], self.dynamics.dim)
        sol = solve(self._ode(options, 0), self.dynamics, flat, self._t_span(self.T, 0.0, options))
        return sol[-1].reshape(z.shape)

    @torch.no_grad()
    def sample(self, n: int, generator: Optional[torch.Generator] = None) -> Tensor:
        """Draw ``n`` samples: Tensor[n, *shape] (no gradient)."""
        ref = next(self.parameters())
        return self.inverse(self.base.sample(n, generator=generator).to(ref))

    @torch.no_grad()
    def trajectory(self, x: Tensor, t_span: Tensor) -> Tensor:
        """States along the flow at times ``t_span`` (increasing: data -> latent; decreasing:
        latent -> data). Fixed-step solvers step exactly on ``t_span``.
        x: [n, *shape] -> [len(t_span), n, *shape]."""
        options = replace(self.options, sensitivity="autograd")
        flat = x.reshape(x.shape[0], self.dynamics.dim)
        sol = solve(self._ode(options, 0), self.dynamics, flat, t_span.to(flat))
        return sol.reshape(len(t_span), *x.shape)
