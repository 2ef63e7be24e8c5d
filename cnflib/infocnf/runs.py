"""InfoCNF experiments on images: CCNF, InfoCNF (fixed or learned tolerances) and unconditional
CNFs with or without gates (Nguyen et al.), all as :class:`cnflib.models.image_flow.ImageFlow`
models with a conditional base distribution and tolerance gates as block solver.

Used by ``notebooks/04_infocnf.ipynb`` and ``benchmarks/infocnf.py`` so that both train,
evaluate and count NFE in exactly the same way.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.core.flow import FlowOutput
from cnflib.core.train import LossFn
from cnflib.data.images import ImageSplit
from cnflib.infocnf.gates import image_gates
from cnflib.infocnf.priors import ConditionalPrior, ccnf_prior, infocnf_prior, parameter_count
from cnflib.models.image_cnf import MultiscaleCNF
from cnflib.models.image_flow import ImageFlow, ImageRun, bits_per_dim_terms, evaluate
from cnflib.models.image_flow import train_image_flow as _train

KINDS: tuple[str, ...] = ("ccnf", "infocnf", "unconditional")


def build_model(kind: str, shape: Sequence[int], n_classes: int = 10, *, gated: bool = False, levels: int = 17,
                scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16), tol: float = 1e-3,
                trace: str = "hutchinson", sensitivity: str = "autograd",
                gate_range: tuple[float, float] = (1e-6, 1e-4),
                gate_cost: float = 0.1, gate_gain: float = 1.0, gate_std: float = 0.5, T: float = 1.0,
                regularizers: Sequence = ()) -> ImageFlow:
    """A CCNF, InfoCNF or unconditional multiscale CNF (``kind`` in ``KINDS``), solved by dopri5
    at ``tol`` (or, with ``gated``, at tolerances learned within ``gate_range``, gates' mean
    pre-activation scaled by ``gate_gain``, initial policy std ``gate_std`` in log units, NFE cost
    weight ``gate_cost``). ``regularizers``: integrated in every block's solve (e.g. RNODE's,
    :func:`cnflib.rnode.regularizers.rnode`). The conditional prior is the model's base
    distribution; the gates are its block solver."""
    check_choice("model kind", kind, KINDS)
    flow = MultiscaleCNF(shape, scales, blocks_per_scale, hidden, trace=trace, solver="dopri5", atol=tol, rtol=tol,
                         sensitivity=sensitivity, T=T, regularizers=list(regularizers))
    prior = {"ccnf": ccnf_prior, "infocnf": infocnf_prior}.get(kind)
    gates = image_gates(flow.block_shapes, low=gate_range[0], high=gate_range[1], cost=gate_cost,
                         gain=gate_gain, init_std=gate_std) if gated else None
    return ImageFlow(flow, prior(flow.dim, n_classes) if prior else None, gates, levels)


def infocnf_loss(beta: float = 1.0, gate_weight: float = 0.01,
                 regularizer_weights: Optional[dict[str, float]] = None) -> LossFn:
    """Loss for :func:`cnflib.core.train.fit` on batches ``(x_levels, y)``: mean bits/dim of
    ``-log p(x | y)`` (or ``-log p(x)``) plus the weighted regularizers
    (:func:`cnflib.models.image_flow.bits_per_dim_terms`), plus ``beta`` times the auxiliary
    classifier's cross-entropy, plus ``gate_weight`` times the gates' REINFORCE surrogate (reward:
    minus this loss and the NFE cost). Metrics: bpd, xent, error, nfe (forward, all blocks), the
    regularizers, tolerances."""
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
            total = total + gate_weight * gates.reinforce_loss(total)
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


def evaluate_infocnf(model: ImageFlow, data: ImageSplit, tol: Optional[float] = None, seed: int = 0,
                     batch_size: int = 512) -> dict[str, float]:
    """:func:`cnflib.models.image_flow.evaluate` with :func:`conditional_metrics`: bpd (marginal),
    nfe and, for a conditional base, cond_bpd, error and bayes_error."""
    return evaluate(model, data, tol, seed, batch_size, extra=conditional_metrics)


def train_image_flow(label: str, kind: str, train: ImageSplit, test: ImageSplit, *, gated: bool = False,
                     steps: int = 200, batch_size: int = 128, lr: float = 3e-3, beta: float = 1.0,
                     gate_weight: float = 0.01, regularizer_weights: Optional[dict[str, float]] = None,
                     eval_tol: Optional[float] = None, eval_every: int = 0, seed: int = 0,
                     model_options: Optional[dict] = None, **fit_options) -> ImageRun:
    """Build (:func:`build_model`) and train a model (:func:`cnflib.models.image_flow.train_image_flow`
    with :func:`infocnf_loss` and :func:`evaluate_infocnf`'s figures). ``regularizer_weights``: see
    :func:`infocnf_loss` (the regularizers themselves go in ``model_options``)."""
    torch.manual_seed(seed)
    model = build_model(kind, train.event_shape, train.n_classes, gated=gated, levels=train.levels,
                        **(model_options or {}))
    return _train(label, model, train, test, infocnf_loss(beta, gate_weight, regularizer_weights), steps=steps,
                  batch_size=batch_size, lr=lr, eval_tol=eval_tol, eval_every=eval_every, seed=seed,
                  extra=conditional_metrics, **fit_options)


def prior_parameter_counts(model: ImageFlow) -> dict[str, int]:
    """Parameters of the flow, the conditional prior plus classifier, and the gates."""
    conditional = isinstance(model.base, ConditionalPrior)
    return {"flow": parameter_count(model.flow),
            "prior_and_classifier": parameter_count(model.base) if conditional else 0,
            "gates": parameter_count(model.block_solver) if model.block_solver is not None else 0}
