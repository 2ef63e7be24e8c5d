"""MNIST and CIFAR-10 loaders on tiny files in the release formats (idx, python pickle batches)."""
from __future__ import annotations

import hashlib
import pickle

import numpy as np
import pytest
import torch
from torchvision import datasets

from cnflib.data import images


def _write_mnist(root, rng: np.random.Generator) -> dict[str, np.ndarray]:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", 40), ("t10k", 15)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = rng.integers(0, 10, n).astype(np.uint8)
        header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + n.to_bytes(4, "big")
                                                         + y.tobytes())
        arrays[prefix] = (x, y)
    return arrays


def _write_cifar(root, rng: np.random.Generator, monkeypatch) -> dict[str, tuple[np.ndarray, list[int]]]:
    """Five train batches of 8 images, a test batch of 6, batches.meta; torchvision is told their md5s."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    md5 = {}
    for name, n in [*((f"data_batch_{i}", 8) for i in range(1, 6)), ("test_batch", 6)]:
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # 1024 red, 1024 green, 1024 blue per row
        labels = rng.integers(0, 10, n).tolist()
        blob = pickle.dumps({"data": rows, "labels": labels})
        (folder / name).write_bytes(blob)
        batches[name], md5[name] = (rows, labels), hashlib.md5(blob).hexdigest()
    meta = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    (folder / "batches.meta").write_bytes(meta)
    monkeypatch.setattr(datasets.CIFAR10, "train_list", [[f"data_batch_{i}", md5[f"data_batch_{i}"]]
                                                          for i in range(1, 6)])
    monkeypatch.setattr(datasets.CIFAR10, "test_list", [["test_batch", md5["test_batch"]]])
    monkeypatch.setattr(datasets.CIFAR10, "meta", {**datasets.CIFAR10.meta, "md5": hashlib.md5(meta).hexdigest()})
    return batches


def test_mnist_splits_are_the_idx_files_in_order(tmp_path):
    arrays = _write_mnist(tmp_path, np.random.default_rng(0))
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
    batches = _write_cifar(tmp_path, np.random.default_rng(1), monkeypatch)
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
    _write_cifar(tmp_path, np.random.default_rng(2), monkeypatch)
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
    _write_mnist(tmp_path, np.random.default_rng(3))
    with pytest.raises(ValueError, match="valid: train, validation, test"):
        images.mnist("val", tmp_path)
    with pytest.raises(ValueError, match="validation_size"):
        images.mnist("train", tmp_path, validation_size=40)
