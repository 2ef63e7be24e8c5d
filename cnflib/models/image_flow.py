"""A flow on discrete images: dequantization, the logit transform, a multiscale CNF and a base
distribution, with one loss, one evaluation and one training run for every image experiment
(FFJORD and RNODE on images, CCNF and InfoCNF).

For integer images ``x`` with ``levels`` grey levels, ``u = (x + noise) / levels`` in [0, 1) and
``y = logit(alpha + (1 - 2 alpha) u)``; the flow maps ``y`` to ``z`` and

    log p(u | c) = log p_base(z | c) + delta_logp(flow) + log|dy/du|,

reported in bits/dim of the discrete images (:func:`cnflib.core.transforms.bits_per_dim`). The
context ``c`` is a label for a conditional base (:mod:`cnflib.infocnf.priors`) and ``None``
otherwise. Dequantization noise is drawn inside the loss, seeded per step by
:func:`cnflib.core.train.fit`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Optional

import pandas as pd
import torch
from torch import Tensor, nn

from cnflib.core.distributions import StandardNormal
from cnflib.core.flow import FlowOutput
from cnflib.core.train import LossFn, fit
from cnflib.core.transforms import bits_per_dim, dequantize, inverse_logit_transform, logit_transform
from cnflib.data.images import ImageSplit
from cnflib.models.image_cnf import MultiscaleCNF, plain_solve


class ImageFlow(nn.Module):
    """A :class:`MultiscaleCNF` on dequantized, logit-transformed integer images.

    Arguments:
        flow: the multiscale CNF on logit-space images.
        base: the latent's distribution (default N(0, I); a conditional prior takes labels as context).
        block_solver: solves each flow block, e.g. with a learned tolerance
            (:class:`cnflib.infocnf.gates.ToleranceGates`); ``None``: each block's own settings.
        levels: grey levels of the integer images; alpha: of the logit transform.
    """

    def __init__(self, flow: MultiscaleCNF, base: Optional[nn.Module] = None, block_solver: Optional[nn.Module] = None,
                 levels: int = 17, alpha: float = 0.05) -> None:
        super().__init__()
        self.flow, self.block_solver = flow, block_solver
        self.base = StandardNormal(flow.dim) if base is None else base
        self.levels, self.alpha = levels, alpha

    @property
    def dim(self) -> int:
        return self.flow.dim

    def forward(self, x_levels: Tensor, generator: Optional[torch.Generator] = None) -> FlowOutput:
        """Integer images [n, C, H, W] -> :meth:`transform` of their dequantization."""
        return self.transform(dequantize(x_levels, self.levels, generator))

    def transform(self, u: Tensor) -> FlowOutput:
        """Images in [0, 1) [n, C, H, W] -> FlowOutput(z [n, D], delta_logp [n] = flow + logit log-det,
        the flow's regularizers, the forward NFE of all blocks)."""
        y, logit_log_det = logit_transform(u, self.alpha)
        out = self.flow(y, self.block_solver if self.block_solver is not None else plain_solve)
        return FlowOutput(out.z, out.delta_logp + logit_log_det, out.regularizers, out.nfe)

    def log_prob(self, x_levels: Tensor, context: Optional[Tensor] = None,
                 generator: Optional[torch.Generator] = None) -> Tensor:
        """log p(u | context) in nats of the dequantized images u in [0, 1): [n]."""
        return self.forward(x_levels, generator).log_prob(self.base, context)

    def bits_per_dim(self, nll: Tensor) -> Tensor:
        """Bits/dim of the discrete images from the NLL [n] of their [0, 1) scaling."""
        return bits_per_dim(nll, self.dim, self.levels)

    @contextlib.contextmanager
    def fixed_tolerance(self, tol: float) -> Iterator["ImageFlow"]:
        """Solve every block at ``atol = rtol = tol``, without the block solver."""
        saved = self.block_solver
        with contextlib.ExitStack() as stack:
            for block in self.flow.blocks:
                stack.enter_context(block.solver_options(atol=tol, rtol=tol))
            self.block_solver = None
            try:
                yield self
            finally:
                self.block_solver = saved

    @torch.no_grad()
    def inverse(self, z: Tensor) -> Tensor:
        """Latents [n, D] -> images in [0, 1] [n, C, H, W] (the dequantized scale; undoes :meth:`transform`)."""
        return inverse_logit_transform(self.flow.inverse(z), self.alpha)

    @torch.no_grad()
    def sample(self, n: int, context: Optional[Tensor] = None, temperature: float = 1.0,
               generator: Optional[torch.Generator] = None) -> Tensor:
        """n images in [0, 1] [n, C, H, W], given labels ``context`` [n] for a conditional base."""
        z = self.base.sample(n, context, generator=generator, temperature=temperature)
        return self.inverse(z.to(next(self.parameters())))


def bits_per_dim_terms(model: ImageFlow, x: Tensor, context: Optional[Tensor],
                       regularizer_weights: dict[str, float]) -> tuple[FlowOutput, Tensor, dict[str, float]]:
    """The likelihood part of every image loss: (the flow's output, mean bits/dim of
    ``-log p(x | context)`` plus ``sum_j w_j * mean(regularizer_j)`` (RNODE), metrics bpd, nfe and
    the regularizers' means)."""
    out = model(x)
    bpd = model.bits_per_dim(-out.log_prob(model.base, context)).mean()
    total = bpd + sum(w * out.regularizers[name].mean() for name, w in regularizer_weights.items())
    metrics = {"bpd": bpd.item(), "nfe": float(out.nfe),
               **{name: value.mean().item() for name, value in out.regularizers.items()}}
    return out, total, metrics


def image_flow_loss(regularizer_weights: Optional[dict[str, float]] = None) -> LossFn:
    """Loss for :func:`cnflib.core.train.fit` on batches ``(x_levels, y)`` of an unconditional image
    flow: bits/dim plus the weighted regularizers (:func:`bits_per_dim_terms`)."""
    weights = dict(regularizer_weights or {})

    def loss(model: ImageFlow, batch: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, float]]:
        _, total, metrics = bits_per_dim_terms(model, batch[0], None, weights)
        return total, metrics

    return loss


# (model, flow output of a test batch, its labels) -> sums of extra metrics over the batch
ExtraMetrics = Callable[[ImageFlow, FlowOutput, Tensor], dict[str, float]]


@torch.no_grad()
def evaluate(model: ImageFlow, data: ImageSplit, tol: Optional[float] = None, seed: int = 0, batch_size: int = 512,
             extra: Optional[ExtraMetrics] = None) -> dict[str, float]:
    """Test figures with one fixed dequantization (``seed``): ``bpd`` of ``-log p(x)`` (a conditional
    base gives its marginal), the forward NFE per batch (``nfe``, all blocks), and the means of
    ``extra``'s sums. ``tol``: a fixed tolerance for every block (no block solver); ``None``: the
    model's own (e.g. learned) tolerances."""
    was_training = model.training
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    sums: dict[str, float] = {"bpd": 0.0}
    nfes = []
    context = model.fixed_tolerance(tol) if tol is not None else contextlib.nullcontext()
    with context:
        for xb, yb in zip(data.x.split(batch_size), data.y.split(batch_size)):
            out = model(xb, generator)
            nfes.append(out.nfe)
            sums["bpd"] += model.bits_per_dim(-out.log_prob(model.base)).sum().item()
            for name, value in (extra(model, out, yb) if extra is not None else {}).items():
                sums[name] = sums.get(name, 0.0) + value
    model.train(was_training)
    result = {k: v / len(data) for k, v in sums.items()}
    result["nfe"] = sum(nfes) / len(nfes)
    return result


@dataclass
class ImageRun:
    """A trained model, its :func:`cnflib.core.train.fit` history and its label."""

    label: str
    model: ImageFlow
    history: pd.DataFrame

    @property
    def seconds_per_step(self) -> float:
        return float(self.history.seconds.iloc[-1]) / len(self.history)


def train_image_flow(label: str, model: ImageFlow, train: ImageSplit, test: ImageSplit, loss: LossFn, *,
                     steps: int = 200, batch_size: int = 128, lr: float = 3e-3, eval_tol: Optional[float] = None,
                     eval_every: int = 0, seed: int = 0, extra: Optional[ExtraMetrics] = None,
                     **fit_options) -> ImageRun:
    """Train ``model`` on ``(train.x, train.y)`` with :func:`cnflib.core.train.fit`; the history gets
    ``eval_*`` test figures (:func:`evaluate` at ``eval_tol``, default the training tolerances) every
    ``eval_every`` steps and at the end. ``fit_options`` go to ``fit`` (e.g. the trainer settings)."""
    history = fit(model, (train.x.float(), train.y), steps=steps, loss=loss, batch_size=batch_size, lr=lr, seed=seed,
                  evaluate=lambda m: evaluate(m, test, eval_tol, seed, extra=extra), eval_every=eval_every,
                  progress=False, desc=label, **fit_options)
    return ImageRun(label, model, history)
