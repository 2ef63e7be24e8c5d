"""Digits, dequantization, the logit transform and bits per dimension."""
import math

import pytest
import torch

from cnflib.data import images


def test_digits_splits_are_stratified_and_complete():
    splits = {name: images.digits(name) for name in images.SPLITS}
    assert sum(len(s) for s in splits.values()) == 1797
    assert splits["train"].x.shape[1:] == (1, 8, 8) and splits["train"].x.dtype == torch.uint8
    assert int(splits["train"].x.max()) <= 16 and splits["test"].levels == 17
    assert all(s.n_classes == 10 for s in splits.values())
    assert 0.19 < len(splits["test"]) / 1797 < 0.21
    for label in range(10):
        counts = [int((s.y == label).sum()) for s in splits.values()]
        assert abs(counts[2] / sum(counts) - 0.2) < 0.02  # each class is split in the same proportions


def test_unknown_split_lists_valid_ones():
    with pytest.raises(ValueError, match="valid: train, validation, test"):
        images.digits("dev")


def test_dequantize_stays_in_its_bin():
    x = torch.randint(0, 17, (100, 1, 8, 8), dtype=torch.uint8)
    u = images.dequantize(x, 17, torch.Generator().manual_seed(0))
    assert torch.equal(torch.floor(u * 17).to(torch.uint8), x)


def test_logit_log_det_matches_autograd():
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    y, log_det = images.logit_transform(x, alpha=0.05)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: images.logit_transform(v, 0.05)[0], x[i:i + 1])
        jac = jac.reshape(4, 4)
        assert torch.allclose(log_det[i], torch.logdet(jac), atol=1e-10)


def test_bits_per_dim_of_uniform_levels_is_log2_levels():
    # The uniform density on [0, 1)^D has NLL 0: its discrete version has log2(levels) bits per dim.
    assert torch.allclose(images.bits_per_dim(torch.zeros(1), 64, 17), torch.tensor([math.log2(17)]))
