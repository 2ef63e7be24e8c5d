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

Every file is checked against the set's definition before use (:func:`check_raw`: its width, at
least :data:`MIN_ROWS` rows, finite values) and every split after preprocessing (width ``D``, not
empty, finite); an unreadable file raises ValueError naming it and the download command. The GAS
pickle is read by :func:`read_gas_pickle`, which resolves only pandas' and NumPy's data classes,
so a crafted file cannot run code.
"""
from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.data import download

NAMES: tuple[str, ...] = ("power", "gas", "hepmass", "miniboone", "bsds300")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
DIMS: dict[str, int] = {"power": 6, "gas": 8, "hepmass": 21, "miniboone": 43, "bsds300": 63}
RAW_WIDTHS: dict[str, int] = {"power": 8, "hepmass_train": 29, "hepmass_test": 30, "miniboone": 43, "bsds300": 63}
MIN_ROWS = 12  # MAF's two 10% splits leave every split non-empty from 12 rows on
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
    return torch.from_numpy(_splits(name, str(base.resolve()), None if root is None else str(root))[index].copy())


def _read(name: str, path: Path, reader: Callable[[Path], Any], root: Optional[str]) -> Any:
    """``reader(path)``, or ValueError naming the file and the download command if it cannot be read."""
    try:
        return reader(path)
    except ImportError:
        raise
    except Exception as error:  # numpy, pandas, pickle and hdf5 errors of a damaged file
        raise ValueError(f"{path} is not a readable {name.upper()} file ({type(error).__name__}: {error}). "
                         f"Delete it and download again with:\n    {download.download_command(name, root)}") from None


def check_raw(name: str, path: Path, data: np.ndarray, width: Optional[int], root: Optional[str]) -> np.ndarray:
    """``data`` as float64 if it is [N >= MIN_ROWS, width] with finite values; else ValueError naming ``path``."""
    fix = f"the file is damaged or not the MAF release's: download it again with {download.download_command(name, root)}"
    data = np.asarray(data)
    if data.ndim != 2 or (width is not None and data.shape[1] != width):
        raise ValueError(f"{path} holds an array of shape {list(data.shape)}; {name.upper()} files have "
                         f"{width} columns: {fix}")
    if len(data) < MIN_ROWS:
        raise ValueError(f"{path} has {len(data)} rows; {name.upper()} needs at least {MIN_ROWS} "
                         f"(MAF's 10% test and validation splits would be empty): {fix}")
    try:
        data = data.astype(np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{path} holds non-numeric values ({error}): {fix}") from None
    bad = ~np.isfinite(data).all(1)
    if bad.any():
        raise ValueError(f"{path} has NaN or inf values in {int(bad.sum())} of {len(data)} rows (first: row "
                         f"{int(np.argmax(bad))}): {fix}")
    return data


def _check_splits(name: str, folder: Path, parts: Splits, root: Optional[str]) -> Splits:
    for split, part in zip(SPLITS, parts):
        if part.ndim != 2 or part.shape[1] != DIMS[name] or len(part) == 0 or not np.isfinite(part).all():
            raise ValueError(f"the {name.upper()} files in {folder} give a {split} split of shape {list(part.shape)}"
                             f"{'' if np.isfinite(part).all() else ' with NaN or inf values'}; the set has "
                             f"{DIMS[name]} columns and every split rows with finite values: the files are not "
                             f"the MAF release's; download them again with {download.download_command(name, root)}")
    return parts


@functools.lru_cache(maxsize=None)
def _splits(name: str, base: str, root: Optional[str] = None) -> Splits:
    folder = Path(base) / "maf"

    def raw(path: Path, reader: Callable[[Path], Any], width: Optional[int]) -> np.ndarray:
        return check_raw(name, path, _read(name, path, reader, root), width, root)

    if name == "power":
        parts = power(raw(folder / "power" / "data.npy", np.load, RAW_WIDTHS["power"]))
    elif name == "gas":
        path = folder / "gas" / "ethylene_CO.pickle"
        frame = _read(name, path, read_gas_pickle, root)
        missing = [c for c in ("Meth", "Eth", "Time") if c not in getattr(frame, "columns", ())]
        if missing:
            raise ValueError(f"{path} lacks the columns {missing} of the GAS table: download it again with "
                             f"{download.download_command(name, root)}")
        check_raw(name, path, frame.to_numpy(), None, root)
        parts = gas(frame)
    elif name == "hepmass":
        import pandas as pd

        def csv(path: Path) -> np.ndarray:
            return pd.read_csv(path, index_col=False).to_numpy()

        parts = hepmass(raw(folder / "hepmass" / "1000_train.csv", csv, RAW_WIDTHS["hepmass_train"]),
                        raw(folder / "hepmass" / "1000_test.csv", csv, RAW_WIDTHS["hepmass_test"]))
    elif name == "miniboone":
        parts = miniboone(raw(folder / "miniboone" / "data.npy", np.load, RAW_WIDTHS["miniboone"]))
    else:
        path = folder / "BSDS300" / "BSDS300.hdf5"
        parts = tuple(check_raw(name, path, part, RAW_WIDTHS["bsds300"], root)
                      for part in _read(name, path, bsds300, root))
    return _check_splits(name, folder, tuple(part.astype(np.float32) for part in parts), root)  # type: ignore[arg-type]


def read_gas_pickle(path: Path):
    """The GAS table (a pandas DataFrame) from its pickle, resolving only pandas' and NumPy's data
    classes and reconstructors (:func:`data_unpickler`): a crafted file cannot run code."""
    return data_unpickler(io.BytesIO(Path(path).read_bytes())).load()


_RECONSTRUCTORS = {("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
                   ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
                   ("numpy._core.numeric", "_frombuffer"), ("numpy.core.numeric", "_frombuffer"),
                   ("pandas.core.indexes.base", "_new_Index"), ("pandas._libs.internals", "_unpickle_block"),
                   ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"), ("copyreg", "_reconstructor"),
                   ("_codecs", "encode"), ("collections", "OrderedDict")}


def data_unpickler(file: io.BytesIO) -> pickle.Unpickler:
    """pandas' compatibility unpickler (it reads old pandas pickles) restricted to data: a global is
    resolved only if it is one of :data:`_RECONSTRUCTORS` or a data class of pandas, NumPy or the
    builtins (frames, indexes, blocks, arrays, dtypes, slices; not ``numpy.memmap``); anything else
    raises ``pickle.UnpicklingError`` naming it."""
    import pandas as pd
    from pandas.compat.pickle_compat import Unpickler, _class_locations_map
    from pandas.core.internals.blocks import Block
    from pandas.core.internals.managers import BaseBlockManager

    data_types = (pd.DataFrame, pd.Series, pd.Index, pd.api.extensions.ExtensionDtype,
                  pd.api.extensions.ExtensionArray, BaseBlockManager, Block, np.ndarray, np.dtype, np.generic,
                  slice, range, complex, frozenset, set, bytearray)

    class DataUnpickler(Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            module, name = _class_locations_map.get((module, name), (module, name))
            if (module, name) in _RECONSTRUCTORS:
                return super().find_class(module, name)
            if module.split(".")[0] in ("pandas", "numpy", "builtins", "__builtin__"):
                found = super().find_class(module, name)
                if isinstance(found, type) and issubclass(found, data_types) and not issubclass(found, np.memmap):
                    return found
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which is not part of a pandas table "
                                         "(refused: unpickling it could run code)")

    return DataUnpickler(file)


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
