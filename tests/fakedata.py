"""Tiny data files in each downloaded set's release format, written under a data directory.

Shared by the loaders' tests (``test_tabular.py``, ``test_image_loaders.py``) and the smoke run of
the full presets (``test_full_smoke.py``), which points ``$CNFLIB_DATA`` at them:

- :func:`write_maf`: ``maf/{power,gas,hepmass,miniboone}`` as in the MAF release (npy, pandas
  pickle, csv), ``n`` rows each (HEPMASS: ``2 n`` train rows);
- :func:`write_mnist`: ``MNIST/raw`` idx files (uint8 images and labels);
  labels cycle through the 10 classes, so that every split holds each class;
- :func:`write_cifar`: ``cifar-10-batches-py`` pickled batches. torchvision checks each batch
  against CIFAR-10's md5s, so the caller tells it the fake files' md5s: :func:`trust_cifar` in a
  test (monkeypatch), :func:`trust_cifar_source` in a notebook kernel (an IPython startup file).
"""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import numpy as np
import pandas as pd


def _power_raw(rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, 8] in MAF's column order; the time column holds the row id (POWER adds no noise to it)."""
    raw = rng.integers(0, 50, size=(n, 8)).astype(np.float64)
    raw[:, [1, 3]] = rng.normal(1e6, 1e5, size=(n, 2))  # the dropped columns would wreck the loaders' checks
    raw[:, 7] = np.arange(n)
    return raw


def _gas_frame(rng: np.random.Generator, n: int) -> pd.DataFrame:
    """Time, Meth, Eth and 16 sensors; sensors 8..15 are copies of 0..7 plus tiny noise (corr > 0.98)."""
    base = rng.normal(size=(n, 8)) * rng.uniform(1, 5, size=8) + rng.uniform(-3, 3, size=8)
    sensors = np.hstack([base, base + 1e-3 * rng.normal(size=(n, 8))])
    frame = pd.DataFrame(sensors, columns=[f"S{i}" for i in range(16)])
    frame.insert(0, "Eth", rng.uniform(size=n))
    frame.insert(0, "Meth", rng.uniform(size=n))
    frame.insert(0, "Time", np.arange(n, dtype=float))
    return frame


def _hepmass_frames(rng: np.random.Generator, n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Label + 28 features; features 0..6 are discrete (their smallest value repeats), the test file
    has one extra last column (as in the release)."""
    def frame(rows: int, extra: bool) -> pd.DataFrame:
        features = rng.normal(size=(rows, 28))
        features[:, :7] = rng.integers(0, 3, size=(rows, 7))
        data = {"# label": rng.integers(0, 2, size=rows).astype(float)}
        data.update({f"f{j}": features[:, j] for j in range(27)})
        data["mass"] = features[:, 27]
        if extra:
            data["junk"] = rng.normal(size=rows)
        return pd.DataFrame(data)

    return frame(2 * n, False), frame(n, True)


def write_maf(root: Path, rng: np.random.Generator, n: int = 1_000) -> dict[str, np.ndarray]:
    """Write maf/{power,gas,hepmass,miniboone} in their release formats under ``root``; return the raw
    POWER [n, 8] and MINIBOONE [n, 43] arrays."""
    maf = Path(root) / "maf"
    for folder in ("power", "gas", "hepmass", "miniboone"):
        (maf / folder).mkdir(parents=True)
    power = _power_raw(rng, n)
    np.save(maf / "power" / "data.npy", power)
    _gas_frame(rng, n).to_pickle(maf / "gas" / "ethylene_CO.pickle")
    train, test = _hepmass_frames(rng, n)
    train.to_csv(maf / "hepmass" / "1000_train.csv", index=False)
    test.to_csv(maf / "hepmass" / "1000_test.csv", index=False)
    miniboone = rng.normal(3.0, 2.0, size=(n, 43))
    np.save(maf / "miniboone" / "data.npy", miniboone)
    return {"power": power, "miniboone": miniboone}


def write_mnist(root: Path, rng: np.random.Generator, train: int = 40, test: int = 15
                ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Write MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte; return ``{prefix: (x [n, 28, 28], y [n])}``."""
    raw = Path(root) / "MNIST" / "raw"
    raw.mkdir(parents=True)
    arrays = {}
    for prefix, n in (("train", train), ("t10k", test)):
        x = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        y = (np.arange(n) % 10).astype(np.uint8)  # every class in any 10 consecutive images
        header = (2051).to_bytes(4, "big") + b"".join(v.to_bytes(4, "big") for v in (n, 28, 28))
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(header + x.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes((2049).to_bytes(4, "big") + n.to_bytes(4, "big")
                                                         + y.tobytes())
        arrays[prefix] = (x, y)
    return arrays


def write_cifar(root: Path, rng: np.random.Generator, per_batch: int = 8, test: int = 6
                ) -> tuple[dict[str, tuple[np.ndarray, list[int]]], dict[str, str]]:
    """Write five train batches of ``per_batch`` images, a test batch of ``test`` and batches.meta under
    ``root/cifar-10-batches-py``; return ``({batch: (rows [n, 3072], labels)}, {file: md5})``."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches, md5 = {}, {}
    for name, n in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", test)]:
        rows = rng.integers(0, 256, (n, 3072), dtype=np.uint8)  # 1024 red, 1024 green, 1024 blue per row
        labels = (np.arange(n) % 10).tolist()  # every class in any 10 consecutive images
        blob = pickle.dumps({"data": rows, "labels": labels})
        (folder / name).write_bytes(blob)
        batches[name], md5[name] = (rows, labels), hashlib.md5(blob).hexdigest()
    meta = pickle.dumps({"label_names": [f"class{i}" for i in range(10)]})
    (folder / "batches.meta").write_bytes(meta)
    md5["batches.meta"] = hashlib.md5(meta).hexdigest()
    return batches, md5


def _cifar_attributes(md5: dict[str, str]) -> dict[str, object]:
    """The ``torchvision.datasets.CIFAR10`` class attributes that make it accept the files of ``md5``."""
    from torchvision import datasets

    return {"train_list": [[f"data_batch_{i}", md5[f"data_batch_{i}"]] for i in range(1, 6)],
            "test_list": [["test_batch", md5["test_batch"]]],
            "meta": {**datasets.CIFAR10.meta, "md5": md5["batches.meta"]}}


def trust_cifar(md5: dict[str, str], monkeypatch) -> None:
    """Tell torchvision (for this test) the md5s of the files :func:`write_cifar` wrote."""
    from torchvision import datasets

    for name, value in _cifar_attributes(md5).items():
        monkeypatch.setattr(datasets.CIFAR10, name, value)


def trust_cifar_source(md5: dict[str, str]) -> str:
    """Python source that tells torchvision the md5s of the files :func:`write_cifar` wrote (for a
    notebook kernel's IPython startup file)."""
    lines = ["from torchvision import datasets"]
    lines += [f"datasets.CIFAR10.{name} = {value!r}" for name, value in _cifar_attributes(md5).items()]
    return "\n".join(lines) + "\n"
