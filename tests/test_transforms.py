"""Image transforms against closed forms: dequantization, the logit's log-det, bits/dim, squeeze."""
import math

import torch

from cnflib.core import transforms


def test_dequantize_stays_in_its_bin():
    x = torch.randint(0, 17, (100, 1, 8, 8), dtype=torch.uint8)
    u = transforms.dequantize(x, 17, torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(u * 17).to(torch.uint8), x)


def test_dequantize_centred_is_the_same_noise_shifted_by_a_half():
    x = torch.randint(0, 17, (100, 1, 8, 8), dtype=torch.uint8)
    u = transforms.dequantize(x, 17, torch.Generator().manual_seed(0))
    c = transforms.dequantize_centred(x, 17, torch.Generator().manual_seed(0))
    assert torch.equal(c, u - 0.5) and c.min() >= -0.5 and c.max() < 0.5


def test_logit_log_det_matches_autograd():
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    y, log_det = transforms.logit_transform(x, alpha=0.05)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: transforms.logit_transform(v, 0.05)[0], x[i:i + 1])
        jac = jac.reshape(4, 4)
        assert torch.allclose(log_det[i], torch.logdet(jac), atol=1e-10)


def test_bits_per_dim_of_uniform_levels_is_log2_levels():
    # The uniform density on [0, 1)^D has NLL 0: its discrete version has log2(levels) bits per dim.
    assert torch.allclose(transforms.bits_per_dim(torch.zeros(1), 64, 17), torch.tensor([math.log2(17)]))


def test_inverse_logit_undoes_the_logit():
    x = torch.rand(4, 1, 3, 3, dtype=torch.float64)
    y, _ = transforms.logit_transform(x, 0.05)
    assert torch.allclose(transforms.inverse_logit_transform(y, 0.05), x, atol=1e-12)
