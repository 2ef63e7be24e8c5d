"""Image CNF: squeeze is a permutation, the multiscale map inverts, and with a zero field the
bits/dim are those of a standard normal on the logit data (closed form)."""
import math

import pytest
import torch
from torch import nn

from cnflib.core.transforms import bits_per_dim, dequantize, logit_transform
from cnflib.core.distributions import standard_normal_log_prob
from cnflib.core.transforms import squeeze, unsqueeze
from cnflib.models.image_cnf import ConcatSquashConv2d, ConvODENet, MultiscaleCNF
from cnflib.models.image_flow import ImageFlow


def zero_field(flow: MultiscaleCNF) -> None:
    for block in flow.blocks:
        for p in block.vector_field.parameters():
            nn.init.zeros_(p)


def test_squeeze_is_an_invertible_permutation():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    s = squeeze(x)
    assert s.shape == (2, 12, 2, 3)
    assert torch.equal(unsqueeze(s), x)
    assert torch.equal(s.flatten(1).sort(1).values, x.flatten(1).sort(1).values)
    # channel c*4 + 2*i + j of the squeeze holds pixel (2h + i, 2w + j) of channel c
    assert s[0, 4 * 1 + 2 * 1 + 0, 1, 2] == x[0, 1, 3, 4]


def test_conv_field_shapes_and_time_dependence():
    f = ConvODENet(2, (4, 4))
    z = torch.randn(3, 2, 4, 4)
    assert f(torch.tensor(0.0), z).shape == z.shape
    layer = ConcatSquashConv2d(2, 3)
    assert not torch.allclose(layer(torch.tensor(0.0), z), layer(torch.tensor(1.0), z))


def test_bad_image_size_raises():
    with pytest.raises(ValueError):
        MultiscaleCNF((1, 6, 6), scales=3)


@pytest.mark.parametrize("scales,blocks", [(2, 1), (3, 1), (2, 2)])
def test_multiscale_latent_shape_and_inverse(scales, blocks):
    torch.manual_seed(0)
    flow = MultiscaleCNF((1, 8, 8), scales=scales, blocks_per_scale=blocks, hidden=(4,), atol=1e-7, rtol=1e-7,
                         trace="exact")
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        out = flow(x)
    assert out.z.shape == (3, 64) and out.delta_logp.shape == (3,) and len(flow.block_nfe) == scales * blocks and out.nfe == sum(flow.block_nfe)
    assert torch.allclose(flow.inverse(out.z), x, atol=1e-4)


def test_zero_field_gives_standard_normal_of_logit_data():
    flow = MultiscaleCNF((1, 8, 8), scales=2, hidden=(4,), trace="exact")
    zero_field(flow)
    x_levels = torch.randint(0, 17, (5, 1, 8, 8))
    gen = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    with torch.no_grad():
        model = ImageFlow(flow, levels=17)
        bpd = model.bits_per_dim(-model.log_prob(x_levels, generator=gen()))
    y, log_det = logit_transform(dequantize(x_levels, 17, gen()))
    nll = -(standard_normal_log_prob(y) + log_det)
    expected = (nll + 64 * math.log(17)) / (64 * math.log(2))
    assert torch.allclose(bpd, expected, atol=1e-5)
    assert torch.allclose(bpd, bits_per_dim(nll, 64, 17))


def test_delta_logp_matches_a_linear_field():
    """f(t, z) = a z in every block: the log-det log abs det dz/dx of the whole map is a * T * (dims each block sees)."""
    flow = MultiscaleCNF((1, 4, 4), scales=2, hidden=(), trace="exact", atol=1e-8, rtol=1e-8)
    for block in flow.blocks:
        layer = block.vector_field.layers[0]
        nn.init.zeros_(layer.conv.weight)
        nn.init.zeros_(layer.conv.bias)
        with torch.no_grad():
            layer.conv.weight[:, :, 1, 1] = 0.3 * torch.eye(layer.conv.weight.shape[0])
        nn.init.constant_(layer.gate.weight, 0.0)
        nn.init.constant_(layer.gate.bias, 50.0)  # sigmoid = 1
        nn.init.zeros_(layer.shift.weight)
    x = torch.randn(2, 1, 4, 4)
    with torch.no_grad():
        out = flow(x)
    # block 1 sees 16 dims, block 2 sees the 8 kept after factor-out: trace 0.3 * 16 + 0.3 * 8
    assert torch.allclose(out.delta_logp, torch.full((2,), 0.3 * 24), atol=1e-4)


def test_conv_field_tangents_match_autograd_jacobian():
    torch.manual_seed(0)
    field = ConvODENet(2, hidden=(4, 3)).double()
    z, v, t = torch.randn(3, 2, 4, 4, dtype=torch.float64), torch.randn(2, 3, 2, 4, 4, dtype=torch.float64), torch.tensor(0.7)
    f, jv = field.jvp(t, z, v)
    torch.testing.assert_close(f, field(t, z))
    for k in range(2):
        torch.testing.assert_close(jv[k], torch.autograd.functional.jvp(lambda zz: field(t, zz), z, v[k])[1])
