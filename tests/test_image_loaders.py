"""MNIST and CIFAR-10 loaders on tiny files in the release formats (idx, python pickle batches)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fakedata import trust_cifar, write_cifar, write_mnist

from cnflib.data import images


def test_mnist_splits_are_the_idx_files_in_order(tmp_path):
    arrays = write_mnist(tmp_path, np.random.default_rng(0))
    train = images.mnist("train", tmp_path, validation_size=10)
    validation = images.mnist("validation", tmp_path, validation_size=10)
    test = images.mnist("test", tmp_path)
    assert train.x.dtype == torch.uint8 and train.y.dtype == torch.long and train.levels == 256
    assert (len(train), len(validation), len(test)) == (30, 10, 15) and train.event_shape == (1, 28, 28)
    x, y = arrays["train"]
    assert torch.equal(validation.x[:, 0], torch.from_numpy(x[-10:]))  # the last training images
    assert torch.equal(train.y, torch.from_numpy(y[:30]).long())
    assert torch.equal(test.x[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert len(images.mnist("train", tmp_path, validation_size=0)) == 40


def test_cifar10_is_channels_first_with_a_validation_tail(tmp_path, monkeypatch):
    batches, md5 = write_cifar(tmp_path, np.random.default_rng(1))
    trust_cifar(md5, monkeypatch)
    train = images.cifar10("train", tmp_path, validation_size=4)
    validation = images.cifar10("validation", tmp_path, validation_size=4)
    test = images.cifar10("test", tmp_path)
    assert (len(train), len(validation), len(test)) == (36, 4, 6)
    assert train.event_shape == (3, 32, 32) and train.x.dtype == torch.uint8 and test.levels == 256
    rows, labels = batches["data_batch_5"]
    expected = torch.from_numpy(rows[-4:].reshape(4, 3, 32, 32))  # row = R plane, G plane, B plane
    assert torch.equal(validation.x, expected) and validation.y.tolist() == labels[-4:]
    assert train.x.is_contiguous()


def test_a_corrupted_cifar_batch_is_refused_by_torchvision_s_md5(tmp_path, monkeypatch):
    trust_cifar(write_cifar(tmp_path, np.random.default_rng(2))[1], monkeypatch)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"(?s)data_batch_3 is damaged .*python -m cnflib.data download cifar10") as error:
        images.cifar10("train", tmp_path)
    assert "download=True" not in str(error.value)


def test_missing_image_sets_name_the_download_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m cnflib.data download mnist --root"):
        images.mnist("train", tmp_path)
    monkeypatch.setenv("CNFLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m cnflib.data download cifar10\n"):
        images.cifar10("test")


def test_bad_split_and_validation_size(tmp_path):
    write_mnist(tmp_path, np.random.default_rng(3))
    with pytest.raises(ValueError, match="valid: train, validation, test"):
        images.mnist("val", tmp_path)
    with pytest.raises(ValueError, match="validation_size"):
        images.mnist("train", tmp_path, validation_size=40)
