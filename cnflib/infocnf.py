"""InfoCNF experiments on images: one model class, one loss and one evaluation for CCNF, InfoCNF
(fixed or learned tolerances) and unconditional CNFs with or without gates (Nguyen et al.).

Used by ``notebooks/04_infocnf.ipynb`` and ``benchmarks/infocnf.py`` so that both train,
evaluate and count NFE in exactly the same way. Models train with :func:`cnflib.train.fit` on
``(x_levels, y)`` tensors; dequantization noise is drawn inside the loss (seeded per step by fit).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnflib._validation import check_choice
from cnflib.data.images import ImageSplit, bits_per_dim
from cnflib.gates import ToleranceGates, image_gates
from cnflib.models.cnf import standard_normal_log_prob
from cnflib.models.conditional import ConditionalPrior, ccnf_prior, infocnf_prior, parameter_count
from cnflib.models.image_cnf import MultiscaleCNF, plain_solve, preprocess
from cnflib.train import LossFn, fit

KINDS: tuple[str, ...] = ("ccnf", "infocnf", "unconditional")


@dataclass
class Encoded:
    """Latent ``z`` [n, D], ``log_det`` [n] (flow plus logit transform), forward NFE per block and
    the flow's integrated regularizers (RNODE), each [n]."""

    z: Tensor
    log_det: Tensor
    nfe: list[int]
    regularizers: dict[str, Tensor]


class ImageFlowModel(nn.Module):
    """A multiscale image CNF with an optional conditional prior and optional tolerance gates.

    Arguments:
        flow: the :class:`MultiscaleCNF` on logit-space images.
        prior: a :class:`ConditionalPrior` (CCNF or InfoCNF) or ``None`` (standard normal latent).
        gates: :class:`ToleranceGates` with one gate per flow block, or ``None``.
        levels: grey levels of the integer images; alpha: of the logit transform.
    """

    def __init__(self, flow: MultiscaleCNF, prior: Optional[ConditionalPrior] = None,
                 gates: Optional[ToleranceGates] = None, levels: int = 17, alpha: float = 0.05) -> None:
        super().__init__()
        self.flow, self.prior, self.gates = flow, prior, gates
        self.levels, self.alpha = levels, alpha

    def encode(self, x_levels: Tensor, generator: Optional[torch.Generator] = None) -> Encoded:
        """Dequantize, logit-transform and push integer images [n, C, H, W] to the latent."""
        y, logit_log_det = preprocess(x_levels, self.levels, self.alpha, generator)
        out = self.flow(y, self.gates if self.gates is not None else plain_solve)
        return Encoded(out.z, out.delta_logp + logit_log_det, out.nfe, out.regularizers)

    def latent_log_prob(self, z: Tensor, y: Tensor) -> Tensor:
        """log p(z | y) (or log N(z; 0, I) without a prior): [n]."""
        return standard_normal_log_prob(z) if self.prior is None else self.prior.log_prob(z, y)

    def bits_per_dim(self, nll: Tensor) -> Tensor:
        """Bits/dim of the discrete images from the NLL [n] of their [0, 1) scaling."""
        return bits_per_dim(nll, self.flow.dim, self.levels)

    @contextlib.contextmanager
    def fixed_tolerance(self, tol: float) -> Iterator["ImageFlowModel"]:
        """Solve every block at ``atol = rtol = tol`` with the gates switched off."""
        with contextlib.ExitStack() as stack:
            for block in self.flow.blocks:
                stack.enter_context(block.solver_options(atol=tol, rtol=tol))
            enabled = self.gates.enabled if self.gates is not None else None
            if self.gates is not None:
                self.gates.enabled = False
            try:
                yield self
            finally:
                if self.gates is not None:
                    self.gates.enabled = enabled

    @torch.no_grad()
    def sample(self, y: Tensor, temperature: float = 1.0, generator: Optional[torch.Generator] = None) -> Tensor:
        """Class-conditional samples in [0, 1]: labels y [n] -> images [n, C, H, W]."""
        if self.prior is None:
            z = torch.randn(len(y), self.flow.dim, generator=generator) * temperature
        else:
            z = self.prior.sample(y, temperature, generator)
        logits = self.flow.inverse(z.to(next(self.parameters())))
        return ((torch.sigmoid(logits) - self.alpha) / (1 - 2 * self.alpha)).clamp(0, 1)


def build_model(kind: str, shape: Sequence[int], n_classes: int = 10, *, gated: bool = False, levels: int = 17,
                scales: int = 2, blocks_per_scale: int = 1, hidden: Sequence[int] = (16, 16), tol: float = 1e-3,
                trace: str = "hutchinson", sensitivity: str = "autograd",
                gate_range: tuple[float, float] = (1e-6, 1e-4),
                gate_cost: float = 0.1, gate_gain: float = 1.0, gate_std: float = 0.5, T: float = 1.0,
                regularizers: Sequence = ()) -> ImageFlowModel:
    """A CCNF, InfoCNF or unconditional multiscale CNF (``kind`` in ``KINDS``), solved by dopri5
    at ``tol`` (or, with ``gated``, at tolerances learned within ``gate_range``, gates' mean
    pre-activation scaled by ``gate_gain``, initial policy std ``gate_std`` in log units, NFE cost
    weight ``gate_cost``). ``regularizers``: integrated in every block's solve (e.g. RNODE's,
    :func:`cnflib.regularizers.rnode`)."""
    check_choice("model kind", kind, KINDS)
    flow = MultiscaleCNF(shape, scales, blocks_per_scale, hidden, trace=trace, solver="dopri5", atol=tol, rtol=tol,
                         sensitivity=sensitivity, T=T, regularizers=list(regularizers))
    prior = {"ccnf": ccnf_prior, "infocnf": infocnf_prior}.get(kind)
    gates = image_gates(flow.block_shapes, low=gate_range[0], high=gate_range[1], cost=gate_cost,
                         gain=gate_gain, init_std=gate_std) if gated else None
    return ImageFlowModel(flow, prior(flow.dim, n_classes) if prior else None, gates, levels)


def image_flow_loss(beta: float = 1.0, gate_weight: float = 0.01,
                    regularizer_weights: Optional[dict[str, float]] = None) -> LossFn:
    """Loss for :func:`cnflib.train.fit` on batches ``(x_levels, y)``: mean bits/dim of
    ``-log p(x | y)`` (or ``-log p(x)``), plus ``beta`` times the auxiliary classifier's
    cross-entropy, plus ``sum_j regularizer_weights[j] * mean(regularizer_j)`` (RNODE), plus
    ``gate_weight`` times the gates' REINFORCE surrogate (reward: minus this loss and the NFE cost).
    Metrics: bpd, xent, error, nfe (forward, all blocks), the regularizers, tolerances."""
    regularizer_weights = dict(regularizer_weights or {})

    def loss(model: ImageFlowModel, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        x, y = batch
        enc = model.encode(x)
        bpd = model.bits_per_dim(-(model.latent_log_prob(enc.z, y) + enc.log_det)).mean()
        total = bpd + sum(w * enc.regularizers[name].mean() for name, w in regularizer_weights.items())
        metrics = {"bpd": bpd.item(), "nfe": float(sum(enc.nfe)),
                   **{name: value.mean().item() for name, value in enc.regularizers.items()}}
        if model.prior is not None:
            logits = model.prior.logits(enc.z)
            xent = F.cross_entropy(logits, y)
            total = total + beta * xent
            metrics.update(xent=xent.item(), error=(logits.argmax(1) != y).float().mean().item())
        if model.gates is not None and model.gates.enabled:
            metrics.update({f"tol_{k}": tol for k, tol in sorted(model.gates.tolerances.items())})
            total = total + gate_weight * model.gates.reinforce_loss(total)
        return total, metrics

    return loss


@torch.no_grad()
def evaluate(model: ImageFlowModel, data: ImageSplit, tol: Optional[float] = None, seed: int = 0,
             batch_size: int = 512) -> dict[str, float]:
    """Test figures with one fixed dequantization (``seed``): bits/dim of ``-log p(x|y)``
    (``cond_bpd``) and ``-log p(x)`` (``bpd``, log-sum-exp over classes), the classifier's error,
    the Bayes-rule error ``argmax_y log p(x|y)`` and the forward NFE per batch (all blocks). ``tol``:
    a fixed tolerance for every block (gates off); ``None``: the model's own (learned) tolerances."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sums = {"cond_bpd": 0.0, "bpd": 0.0, "error": 0.0, "bayes_error": 0.0}
    nfes = []
    context = model.fixed_tolerance(tol) if tol is not None else contextlib.nullcontext()
    with context:
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size)):
            enc = model.encode(xb, generator)
            nfes.append(sum(enc.nfe))
            if model.prior is None:
                sums["bpd"] += model.bits_per_dim(-(standard_normal_log_prob(enc.z) + enc.log_det)).sum().item()
                continue
            class_logp = model.prior.class_log_probs(enc.z)
            marginal = model.prior.marginal_log_prob(enc.z)
            sums["cond_bpd"] += model.bits_per_dim(-(class_logp.gather(1, yb[:, None])[:, 0] + enc.log_det)).sum().item()
            sums["bpd"] += model.bits_per_dim(-(marginal + enc.log_det)).sum().item()
            sums["error"] += (model.prior.logits(enc.z).argmax(1) != yb).sum().item()
            sums["bayes_error"] += (class_logp.argmax(1) != yb).sum().item()
    model.train(was_training)
    out = {k: v / len(data) for k, v in sums.items() if model.prior is not None or k == "bpd"}
    out["nfe"] = sum(nfes) / len(nfes)
    return out


@dataclass
class ImageRun:
    """A trained model, its :func:`cnflib.train.fit` history and its label."""

    label: str
    model: ImageFlowModel
    history: pd.DataFrame

    @property
    def seconds_per_step(self) -> float:
        return float(self.history.seconds.iloc[-1]) / len(self.history)


def train_image_flow(label: str, kind: str, train: ImageSplit, test: ImageSplit, *, gated: bool = False,
                     steps: int = 200, batch_size: int = 128, lr: float = 3e-3, beta: float = 1.0,
                     gate_weight: float = 0.01, regularizer_weights: Optional[dict[str, float]] = None,
                     eval_tol: Optional[float] = None, eval_every: int = 0, seed: int = 0,
                     model_options: Optional[dict] = None, **fit_options) -> ImageRun:
    """Build (:func:`build_model`) and train a model with :func:`cnflib.train.fit`; the history
    gets ``eval_*`` test figures (:func:`evaluate` at ``eval_tol``, default the training
    tolerances) every ``eval_every`` steps and at the end. ``regularizer_weights``: see
    :func:`image_flow_loss` (the regularizers themselves go in ``model_options``). ``fit_options`` go to ``fit``
    (e.g. ``accelerator``, ``devices``, ``strategy``)."""
    torch.manual_seed(seed)
    model = build_model(kind, train.event_shape, train.n_classes, gated=gated, levels=train.levels,
                        **(model_options or {}))
    history = fit(model, (train.x.float(), train.y), steps=steps, loss=image_flow_loss(beta, gate_weight, regularizer_weights),
                  batch_size=batch_size, lr=lr, seed=seed, evaluate=lambda m: evaluate(m, test, eval_tol, seed),
                  eval_every=eval_every, progress=False, desc=label, **fit_options)
    return ImageRun(label, model, history)


def prior_parameter_counts(model: ImageFlowModel) -> dict[str, int]:
    """Parameters of the flow, the conditional prior plus classifier, and the gates."""
    return {"flow": parameter_count(model.flow),
            "prior_and_classifier": parameter_count(model.prior) if model.prior is not None else 0,
            "gates": parameter_count(model.gates) if model.gates is not None else 0}
