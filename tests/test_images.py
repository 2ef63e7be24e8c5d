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
