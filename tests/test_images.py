"""Scikit-learn's digits as an image split."""
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


def test_jittered_digits_shift_invert_and_keep_labels():
    base = images.digits("validation")
    hard = images.jittered(base, invert=0.5, max_shift=2, seed=0)
    assert hard.x.dtype == torch.uint8 and hard.x.shape == base.x.shape and torch.equal(hard.y, base.y)
    assert int(hard.x.max()) <= 16 and hard.levels == 17
    assert torch.equal(images.jittered(base, seed=0).x, hard.x)  # fixed by the seed
    same = images.jittered(base, invert=0.0, max_shift=0)
    assert torch.equal(same.x, base.x)
    inverted = images.jittered(base, invert=1.0, max_shift=0)
    assert torch.equal(inverted.x, 16 - base.x)
    # a shift by (1, 0) moves every row down by one: check one image against the closed form
    shifted = images.jittered(images.ImageSplit(base.x[:1], base.y[:1], 17), invert=0.0, max_shift=1, seed=0)
    moved = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
             if torch.equal(shifted.x[0, 0], torch.roll(torch.nn.functional.pad(base.x[0, 0], (1, 1, 1, 1)), (dy, dx), (0, 1))[1:-1, 1:-1])]
    assert len(moved) >= 1
