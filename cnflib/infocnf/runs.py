"""InfoCNF experiments on images: CCNF, InfoCNF (fixed or learned tolerances) and unconditional
CNFs with or without gates (Nguyen et al.), all as :class:`cnflib.models.image_flow.ImageFlow`
models with a conditional base distribution and tolerance gates as block solver.

Used by ``notebooks/04_infocnf.ipynb`` and ``benchmarks/infocnf.py`` so that both train,
evaluate and count NFE in exactly the same way.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.core.flow import FlowOutput
from cnflib.core.train import LossFn, fit
from cnflib.data.images import ImageSplit
from cnflib.infocnf.gates import image_gates
from cnflib.infocnf.priors import ConditionalPrior, ccnf_prior, infocnf_prior, parameter_count
from cnflib.models.image_cnf import MultiscaleCNF
from cnflib.models.image_flow import ImageFlow, ImageRun, bits_per_dim_terms, evaluate

KINDS: tuple[str, ...] = ("ccnf", "infocnf", "unconditional")
EXACT_TRACE_MAX_DIM = 256  # evaluation uses the exact trace up to this D (D backward-mode tangents)


def build_model(kind: str, shape: Sequence[int], n_classes: int = 10, *, gated: bool = False, levels: int = 17,
                scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16), tol: float = 1e-3,
                trace: str = "hutchinson", sensitivity: str = "autograd",
                gate_range: tuple[float, float] = (1e-6, 1e-4), eta: float = 0.1, gate_lr: float = 5e-2,
                gate_std: float = 0.5, gate_hidden: int = 8, supervised_fraction: float = 0.5, T: float = 1.0,
                regularizers: Sequence = ()) -> ImageFlow:
    """A CCNF, InfoCNF or unconditional multiscale CNF (``kind`` in ``KINDS``), solved by dopri5
    at ``tol`` or, with ``gated``, at tolerances learned within ``gate_range`` by
    :func:`cnflib.infocnf.gates.image_gates` (NFE cost weight ``eta``, the gates' own learning
    rate ``gate_lr``, initial policy std ``gate_std`` in log units, ``gate_hidden`` conv channels).
    ``supervised_fraction``: InfoCNF's share of the latent in ``z_y`` (1.0: the whole latent, as
    CCNF's code; a CCNF always conditions all of it). ``regularizers``: integrated in every
    block's solve (e.g. RNODE's, :func:`cnflib.rnode.regularizers.rnode`). The conditional prior
    is the model's base distribution; the gates are its block solver."""
    check_choice("model kind", kind, KINDS)
    if not 0 < supervised_fraction <= 1:
        raise ValueError(f"supervised_fraction must be in (0, 1], got {supervised_fraction}")
    flow = MultiscaleCNF(shape, scales, blocks_per_scale, hidden, trace=trace, solver="dopri5", atol=tol, rtol=tol,
                         sensitivity=sensitivity, T=T, regularizers=list(regularizers))
    if kind == "ccnf":
        base = ccnf_prior(flow.dim, n_classes)
    elif kind == "infocnf":
        base = infocnf_prior(flow.dim, n_classes, max(1, round(supervised_fraction * flow.dim)))
    else:
        base = None
    gates = image_gates(flow.block_shapes, low=gate_range[0], high=gate_range[1], eta=eta, lr=gate_lr,
                        init_std=gate_std, hidden=gate_hidden) if gated else None
    return ImageFlow(flow, base, gates, levels)


def infocnf_loss(beta: float = 1.0, regularizer_weights: Optional[dict[str, float]] = None) -> LossFn:
    """Loss for :func:`cnflib.core.train.fit` on batches ``(x_levels, y)``: mean bits/dim of
    ``-log p(x | y)`` (or ``-log p(x)``) plus the weighted regularizers
    (:func:`cnflib.models.image_flow.bits_per_dim_terms`), plus ``beta`` times the auxiliary
    classifier's cross-entropy, plus the gates' REINFORCE surrogate (reward: minus this loss and
    the NFE cost; it reaches only the gates, whose step size is their own learning rate, so the
    original code's weight 0.01 on it would change nothing under Adam). Metrics: bpd, xent,
    error, nfe (forward, all blocks), the regularizers, ``tol_k`` (block k's tolerance)."""
    weights = dict(regularizer_weights or {})

    def loss(model: ImageFlow, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        conditional = isinstance(model.base, ConditionalPrior)
        out, total, metrics = bits_per_dim_terms(model, x, y if conditional else None, weights)
        if conditional:
            logits = model.base.logits(out.z)
            xent = F.cross_entropy(logits, y)
            total = total + beta * xent
            metrics.update(xent=xent.item(), error=(logits.argmax(1) != y).float().mean().item())
        gates = model.block_solver
        if gates is not None and gates.enabled:
            metrics.update({f"tol_{k}": tol for k, tol in sorted(gates.tolerances.items())})
            total = total + gates.reinforce_loss(total)
        return total, metrics

    return loss


def conditional_metrics(model: ImageFlow, out: FlowOutput, y: Tensor) -> dict[str, float]:
    """Sums over a test batch for a conditional base: bits/dim of ``-log p(x | y)`` (``cond_bpd``),
    the classifier's error and the Bayes-rule error ``argmax_y log p(x | y)``; nothing otherwise."""
    if not isinstance(model.base, ConditionalPrior):
        return {}
    class_logp = model.base.class_log_probs(out.z)
    return {"cond_bpd": model.bits_per_dim(-(class_logp.gather(1, y[:, None])[:, 0] + out.delta_logp)).sum().item(),
            "error": (model.base.logits(out.z).argmax(1) != y).sum().item(),
            "bayes_error": (class_logp.argmax(1) != y).sum().item()}


@contextlib.contextmanager
def evaluation_trace(model: ImageFlow, seed: int = 0) -> Iterator[str]:
    """Inside: every block uses the exact trace if ``D <= EXACT_TRACE_MAX_DIM``, else its own
    (Hutchinson) estimator with its noise drawn from a generator seeded by ``seed`` (the global
    random state is restored afterwards). Yields the trace's name."""
    with contextlib.ExitStack() as stack:
        if model.dim <= EXACT_TRACE_MAX_DIM:
            for block in model.flow.blocks:
                stack.enter_context(block.trace_estimator("exact"))
            yield "exact"
        else:
            stack.enter_context(torch.random.fork_rng(devices=[]))
            torch.manual_seed(seed)
            yield "seeded " + model.flow.blocks[0].dynamics.trace


def evaluate_infocnf(model: ImageFlow, data: ImageSplit, tol: Optional[float] = None, seed: int = 0,
                     batch_size: int = 512) -> dict[str, float]:
    """:func:`cnflib.models.image_flow.evaluate` under :func:`evaluation_trace` with
    :func:`conditional_metrics`: bpd (marginal), nfe and, for a conditional base, cond_bpd, error
    and bayes_error. ``tol``: one fixed tolerance for every block; ``None``: the model's own."""
    with evaluation_trace(model, seed):
        return evaluate(model, data, tol, seed, batch_size, extra=conditional_metrics)


def train_image_flow(label: str, kind: str, train: ImageSplit, evaluation: Optional[ImageSplit] = None, *,
                     gated: bool = False, steps: int = 200, batch_size: int = 128, lr: float = 3e-3,
                     beta: float = 1.0, regularizer_weights: Optional[dict[str, float]] = None,
                     eval_tol: Optional[float] = None, eval_every: int = 0, seed: int = 0,
                     model_options: Optional[dict] = None, **fit_options) -> ImageRun:
    """Build (:func:`build_model`) and train a model with :func:`cnflib.core.train.fit` and
    :func:`infocnf_loss`. With ``evaluation`` and ``eval_every``, the history gets ``eval_*``
    figures of :func:`evaluate_infocnf` at ``eval_tol`` every ``eval_every`` steps and at the end;
    evaluate the final model on any split with :func:`evaluate_infocnf` itself.
    ``regularizer_weights``: see :func:`infocnf_loss` (the regularizers go in ``model_options``)."""
    torch.manual_seed(seed)
    model = build_model(kind, train.event_shape, train.n_classes, gated=gated, levels=train.levels,
                        **(model_options or {}))
    evaluate_fn = (lambda m: evaluate_infocnf(m, evaluation, eval_tol, seed)) if evaluation is not None and eval_every else None
    history = fit(model, (train.x.float(), train.y), steps=steps, loss=infocnf_loss(beta, regularizer_weights),
                  batch_size=batch_size, lr=lr, seed=seed, evaluate=evaluate_fn, eval_every=eval_every,
                  progress=False, desc=label, **fit_options)
    return ImageRun(label, model, history)


def prior_parameter_counts(model: ImageFlow) -> dict[str, int]:
    """Parameters of the flow, the conditional prior plus classifier, and the gates."""
    conditional = isinstance(model.base, ConditionalPrior)
    return {"flow": parameter_count(model.flow),
            "prior_and_classifier": parameter_count(model.base) if conditional else 0,
            "gates": parameter_count(model.block_solver) if model.block_solver is not None else 0}
