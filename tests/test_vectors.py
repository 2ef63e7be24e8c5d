"""cnflib.data.vectors: one entry point for toy and tabular sets."""
import numpy as np
import pytest
import torch

from cnflib.data.vectors import vector_splits


def test_toy_sets_are_generated_with_the_asked_sizes():
    train, test = vector_splits("pinwheel", 300, 100, seed=1)
    assert train.shape == (300, 2) and test.shape == (100, 2)


def test_tabular_sets_give_the_whole_train_split_and_a_seeded_test_subset(tmp_path, monkeypatch):
    folder = tmp_path / "maf" / "miniboone"
    folder.mkdir(parents=True)
    np.save(folder / "data.npy", np.random.default_rng(0).normal(size=(1000, 43)))
    monkeypatch.setenv("CNFLIB_DATA", str(tmp_path))
    train, test = vector_splits("miniboone", 0, 25, seed=3)
    again = vector_splits("miniboone", 0, 25, seed=3)[1]
    assert train.shape == (810, 43) and test.shape == (25, 43) and train.dtype == torch.float32
    assert torch.equal(test, again)
    assert abs(float(train.mean())) < 0.05  # z-scored with train + validation statistics


def test_unknown_and_missing_sets_say_what_to_do(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="valid: .*pinwheel.*miniboone"):
        vector_splits("minibone", 0, 10)
    monkeypatch.setenv("CNFLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="python -m cnflib.data download power"):
        vector_splits("power", 0, 10)
