"""One contract for every flow in cnflib (issue 13): the same FlowOutput, the base distribution as an
argument, an inverse that round-trips, a log-det equal to log|det| of the autograd Jacobian, a
log-density equal to base + log-det, and a saved-and-loaded copy with the same log-density."""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Callable, Optional

import pytest
import torch
from torch import Tensor, nn
from torch.autograd.functional import jacobian

from cnflib.core import CNF, ConcatSquashMLP, FlowOutput, StandardNormal
from cnflib.infocnf import ccnf_prior, infocnf_prior
from cnflib.models import FlowSequence, ImageFlow, MultiscaleCNF, glow, stacked_cnf

EXACT = dict(solver="dopri5", atol=1e-9, rtol=1e-9, trace="exact", sensitivity="autograd")


@dataclass
class Case:
    """A flow and how to drive it: ``forward(model, x) -> FlowOutput``, ``inverse(model, z) -> x``,
    an input sampler, and the context (labels) of a conditional base."""

    build: Callable[[], nn.Module]
    sample: Callable[[], Tensor]
    forward: Callable[[nn.Module, Tensor], FlowOutput] = lambda m, x: m(x)
    inverse: Callable[[nn.Module, Tensor], Tensor] = lambda m, z: m.inverse(z)
    context: Optional[Tensor] = None


def _glow() -> FlowSequence:
    flow = glow((1, 4, 4), blocks=2, steps=1, hidden=4, seed=0).double()
    flow.data_init(torch.randn(16, 1, 4, 4, dtype=torch.float64))
    return flow


def _image_flow(prior: Optional[Callable[[int, int], nn.Module]]) -> Callable[[], ImageFlow]:
    def build() -> ImageFlow:
        torch.manual_seed(1)
        flow = MultiscaleCNF((1, 4, 4), scales=2, hidden=(4,), **EXACT)
        return ImageFlow(flow, prior(16, 3) if prior else None, levels=17).double()
    return build


def _perturbed(model: nn.Module) -> nn.Module:
    """Move every parameter off its initialization (zero-initialized layers would hide errors)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


CASES = {
    "cnf": Case(lambda: CNF(ConcatSquashMLP(3, (8, 8)), **EXACT).double(), lambda: torch.randn(3, 3, dtype=torch.float64)),
    "cnf_with_a_scaled_base": Case(
        lambda: CNF(ConcatSquashMLP(2, (8,)), base=_ScaledNormal(2, 2.0), **EXACT).double(),
        lambda: torch.randn(3, 2, dtype=torch.float64)),
    "multiscale_cnf": Case(lambda: MultiscaleCNF((1, 4, 4), scales=2, hidden=(4,), **EXACT).double(),
                           lambda: torch.randn(2, 1, 4, 4, dtype=torch.float64)),
    "glow": Case(_glow, lambda: torch.randn(2, 1, 4, 4, dtype=torch.float64),
                 inverse=lambda m, z: m.inverse(z).reshape(-1, 1, 4, 4)),
    "stacked_cnf": Case(lambda: stacked_cnf(2, 2, (8,), **EXACT).double(), lambda: torch.randn(3, 2, dtype=torch.float64)),
    "image_flow": Case(_image_flow(None), lambda: torch.rand(2, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05,
                       forward=lambda m, u: m.transform(u)),
    "ccnf": Case(_image_flow(ccnf_prior), lambda: torch.rand(2, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05,
                 forward=lambda m, u: m.transform(u), context=torch.tensor([0, 2])),
    "infocnf": Case(_image_flow(infocnf_prior), lambda: torch.rand(2, 1, 4, 4, dtype=torch.float64) * 0.9 + 0.05,
                    forward=lambda m, u: m.transform(u), context=torch.tensor([1, 2])),
}


class _ScaledNormal(StandardNormal):
    """N(0, s^2 I): a base other than the default, to check that flows use the one they are given."""

    def __init__(self, dim: int, scale: float) -> None:
        super().__init__(dim)
        self.scale = scale

    def log_prob(self, z: Tensor, context: Optional[Tensor] = None) -> Tensor:
        return super().log_prob(z / self.scale) - z.shape[1] * torch.log(torch.tensor(self.scale, dtype=z.dtype))


@pytest.fixture(params=sorted(CASES))
def case(request) -> tuple[str, Case, nn.Module]:
    torch.manual_seed(0)
    c = CASES[request.param]
    return request.param, c, _perturbed(c.build())


def test_returns_a_flow_output_with_a_base(case):
    _, c, model = case
    out = c.forward(model, c.sample())
    assert isinstance(out, FlowOutput) and out.delta_logp.shape == (out.z.shape[0],)
    assert hasattr(model, "base") and hasattr(model.base, "log_prob")


def test_inverse_round_trip(case):
    _, c, model = case
    x = c.sample()
    with torch.no_grad():
        z = c.forward(model, x).z
        assert torch.allclose(c.inverse(model, z), x, atol=1e-6)


def test_log_det_equals_autograd_jacobian(case):
    _, c, model = case
    x = c.sample()[:1]
    out = c.forward(model, x)
    jac = jacobian(lambda v: c.forward(model, v.reshape(x.shape)).z.reshape(-1), x.reshape(-1))
    assert torch.allclose(out.delta_logp[0], torch.linalg.slogdet(jac)[1], atol=1e-6)


def test_log_prob_is_base_plus_log_det_and_finite(case):
    _, c, model = case
    x = c.sample()
    out = c.forward(model, x)
    log_p = out.log_prob(model.base, c.context)
    expected = model.base.log_prob(out.z, c.context) + out.delta_logp
    assert torch.isfinite(log_p).all() and torch.allclose(log_p, expected)
    if not isinstance(model, ImageFlow):  # an image flow's own log_prob dequantizes integer images first
        assert torch.allclose(model.log_prob(x) if c.context is None else model.log_prob(x, c.context), log_p)


def test_saved_and_loaded_copy_gives_the_same_log_density(case):
    name, c, model = case
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)  # a fresh copy with other initial weights
    copy = c.build()
    copy.load_state_dict(torch.load(buffer, weights_only=True))
    x = c.sample()
    with torch.no_grad():
        original = c.forward(model, x).log_prob(model.base, c.context)
        loaded = c.forward(copy, x).log_prob(copy.base, c.context)
    assert torch.allclose(original, loaded, atol=1e-10), name
