"""The five tabular density-estimation sets of MAF (Papamakarios et al. 2017), as MAF and FFJORD use them.

The files come from the public MAF release (zenodo 1161203; ``python -m cnflib.data download power``
fetches the one archive holding all five) and are unpacked to ``<data directory>/maf/``. The
preprocessing is MAF's own (``gpapamak/maf/datasets``, reused unchanged by FFJORD):

- POWER [N, 8] -> 6: shuffle (RandomState 42), drop columns 3 and 1, add uniform noise
  (0.001 global active power, 0.01 voltage, U[0, 1) to the three sub-meterings, none to time),
  last 10% test, last 10% of the rest validation, z-score with train+validation mean/std.
- GAS (pandas pickle) -> 8: drop Meth, Eth, Time, then repeatedly drop the first column correlated
  > 0.98 with another; z-score with the whole set's mean/std (ddof 1); split as POWER.
- HEPMASS (two csv files, label first) -> 21: positive class only, drop the label and the test file's
  last column, z-score with train mean/std (ddof 1), drop features whose smallest value occurs more
  than 5 times in train, validation = last 10% of train.
- MINIBOONE [N, 43] (the release already holds the cleaned features): split as POWER, z-score with
  train+validation mean/std.
- BSDS300 (hdf5 with train/validation/test keys) -> 63: used as stored.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.data import download

NAMES: tuple[str, ...] = ("power", "gas", "hepmass", "miniboone", "bsds300")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DIMS: dict[str, int] = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
Splits = tuple[np.ndarray, np.ndarray, np.ndarray]


def dim(name: str) -> int:
    """Dimension D of a tabular set (POWER 6, GAS 8, HEPMASS 21, MINIBOONE 43, BSDS300 63)."""
    return DIMS[check_choice("dataset", name, NAMES)]


def load(name: str, split: str, root: Optional[str | Path] = None) -> Tensor:
    """Split ``split`` (train/validation/test) of set ``name`` as float32 [n, D], preprocessed as in MAF.

    ``root`` is the data directory (default ``$CNFLIB_DATA`` or ``<repo>/data/raw``); a missing
    set raises FileNotFoundError naming the download command. The three splits are computed
    once per process and cached.
    """
    check_choice("dataset", name, NAMES)
    index = SPLITS.index(check_choice("split", split, SPLITS))
    base = download.require(name, root)
    return torch.from_numpy(_splits(name, str(base.resolve()))[index].copy())


@functools.lru_cache(maxsize=None)
def _splits(name: str, base: str) -> Splits:
    folder = Path(base) / "maf"
    if name == "power":
        parts = power(np.load(folder / "power" / "data.npy"))
    elif name == "gas":
        import pandas as pd

        parts = gas(pd.read_pickle(folder / "gas" / "ethylene_CO.pickle"))
    elif name == "hepmass":
        import pandas as pd

        parts = hepmass(pd.read_csv(folder / "hepmass" / "1000_train.csv", index_col=False).to_numpy(),
                        pd.read_csv(folder / "hepmass" / "1000_test.csv", index_col=False).to_numpy())
    elif name == "miniboone":
        parts = miniboone(np.load(folder / "miniboone" / "data.npy"))
    else:
        parts = bsds300(folder / "BSDS300" / "BSDS300.hdf5")
    return tuple(part.astype(np.float32) for part in parts)  # type: ignore[return-value]


def split_last(data: np.ndarray, fraction: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """``(data[:-k], data[-k:])`` with ``k = int(fraction * len(data))`` (MAF's split)."""
    k = int(fraction * len(data))
    return data[:-k], data[-k:]


def _zscore(parts: Splits, mean: np.ndarray, std: np.ndarray) -> Splits:
    return tuple((part - mean) / std for part in parts)  # type: ignore[return-value]


def power(raw: np.ndarray) -> Splits:
    """POWER: raw [N, 8] -> train, validation, test [., 6] (noise, split, train+validation z-score)."""
    data = np.array(raw, dtype=np.float64)
    rng = np.random.RandomState(42)
    rng.shuffle(data)
    data = np.delete(np.delete(data, 3, axis=1), 1, axis=1)
    n = len(data)
    voltage, active = 0.01 * rng.rand(n, 1), 0.001 * rng.rand(n, 1)  # MAF's draw order
    data = data + np.hstack((active, voltage, rng.rand(n, 3), np.zeros((n, 1))))
    rest, test = split_last(data)
    train, validation = split_last(rest)
    return _zscore((train, validation, test), rest.mean(0), rest.std(0))


def gas(frame) -> Splits:
    """GAS: pandas DataFrame with Meth, Eth, Time and 16 sensor columns -> train, validation, test [., 8]."""
    frame = frame.drop(columns=["Meth", "Eth", "Time"])
    while True:
        correlated = ((frame.corr() > 0.98).to_numpy().sum(1) > 1).nonzero()[0]
        if len(correlated) == 0:
            break
        frame = frame.drop(columns=frame.columns[correlated[0]])
    data = ((frame - frame.mean()) / frame.std()).to_numpy()
    rest, test = split_last(data)
    train, validation = split_last(rest)
    return train, validation, test


def hepmass(train_raw: np.ndarray, test_raw: np.ndarray) -> Splits:
    """HEPMASS: csv rows [N, 1 + 28] (label first; test has one extra last column) -> splits [., 21]."""
    train = train_raw[train_raw[:, 0] == 1, 1:].astype(np.float64)
    test = test_raw[test_raw[:, 0] == 1, 1:-1].astype(np.float64)
    mean, std = train.mean(0), train.std(0, ddof=1)
    train, test = (train - mean) / std, (test - mean) / std
    keep = [j for j in range(train.shape[1]) if np.unique(train[:, j], return_counts=True)[1][0] <= 5]
    train, validation = split_last(train[:, keep])
    return train, validation, test[:, keep]


def miniboone(raw: np.ndarray) -> Splits:
    """MINIBOONE: raw [N, 43] -> train, validation, test (split, train+validation z-score)."""
    rest, test = split_last(np.asarray(raw, dtype=np.float64))
    train, validation = split_last(rest)
    return _zscore((train, validation, test), rest.mean(0), rest.std(0))


def bsds300(path: Path) -> Splits:
    """BSDS300: the hdf5 file's ``train``, ``validation``, ``test`` arrays [., 63] (needs h5py)."""
    try:
        import h5py
    except ImportError as error:  # not a cnflib dependency: only BSDS300 needs it
        raise ImportError("reading BSDS300.hdf5 needs h5py: pip install h5py") from error
    with h5py.File(path, "r") as handle:
        return tuple(np.asarray(handle[key]) for key in SPLITS)  # type: ignore[return-value]
