"""MAF tabular sets: tiny files in each source format, MAF's preprocessing checked against closed forms."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fakedata import write_maf

from cnflib.data import tabular

N = 1_000  # rows of each tiny source file (tests/fakedata.py): test 100, validation 90, train 810


@pytest.fixture()
def root(tmp_path):
    raw = write_maf(tmp_path, np.random.default_rng(0), N)
    return tmp_path, raw


def test_shapes_dtypes_and_splits(root):
    base, _ = root
    for name in ("power", "gas", "hepmass", "miniboone"):
        parts = [tabular.load(name, split, root=base) for split in tabular.SPLITS]
        for part in parts:
            assert part.dtype == torch.float32 and part.ndim == 2 and part.shape[1] == tabular.dim(name)
            assert torch.isfinite(part).all()
        if name != "hepmass":  # last 10% test, last 10% of the rest validation
            assert [len(p) for p in parts] == [810, 90, 100], name
    assert tabular.dim("bsds300") == 63


def test_power_preprocessing(root):
    base, raw = root
    train, validation, test = tabular.power(raw["power"])
    both = np.vstack([train, validation])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-10)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-10)
    out = np.vstack([train, validation, test])
    # The time column (last) carries no noise: it gives back the row ids, shuffled with RandomState(42).
    ids = np.rint((out[:, 5] - out[:, 5].min()) / np.ptp(out[:, 5]) * (N - 1)).astype(int)
    np.testing.assert_array_equal(ids, np.random.RandomState(42).permutation(N))
    # Columns 1 and 3 dropped; each kept column = (raw + U[0, a)) z-scored, a = 0.001, 0.01, 1, 1, 1, 0.
    for j, (source, width) in enumerate(zip([0, 2, 4, 5, 6, 7], [1e-3, 1e-2, 1, 1, 1, 0])):
        x = raw["power"][ids, source]
        slope, intercept = np.polyfit(x, out[:, j], 1)
        noise = (out[:, j] - intercept) / slope - x  # U[0, a) minus its mean
        assert 0.95 * width - 1e-9 <= np.ptp(noise) <= 1.05 * width + 1e-9, (j, np.ptp(noise))  # slope fit error ~2%
    np.testing.assert_allclose(tabular.load("power", "test", root=base).numpy(), test, rtol=1e-6, atol=1e-6)


def test_gas_drops_correlated_columns_and_zscores(root):
    base, _ = root
    frame = pd.read_pickle(base / "maf" / "gas" / "ethylene_CO.pickle")
    parts = [tabular.load("gas", split, root=base).double().numpy() for split in tabular.SPLITS]
    data = np.vstack(parts)
    assert data.shape == (N, 8)
    np.testing.assert_allclose(data.mean(0), 0, atol=1e-6)  # z-scored over the whole set (pandas ddof 1)
    np.testing.assert_allclose(data.std(0, ddof=1), 1, atol=1e-6)
    corr = np.corrcoef(data.T)
    assert (np.abs(corr[~np.eye(8, dtype=bool)]) < 0.98).all()
    # MAF drops the first column of a correlated pair, repeatedly: sensors 0..7 go, 8..15 stay.
    kept = frame[[f"S{i}" for i in range(8, 16)]].to_numpy()
    np.testing.assert_allclose(data, (kept - kept.mean(0)) / kept.std(0, ddof=1), atol=1e-5)


def test_hepmass_positive_class_feature_drop_and_train_statistics(root):
    base, _ = root
    train_raw = pd.read_csv(base / "maf" / "hepmass" / "1000_train.csv").to_numpy()
    test_raw = pd.read_csv(base / "maf" / "hepmass" / "1000_test.csv").to_numpy()
    train, validation, test = (tabular.load("hepmass", s, root=base).double().numpy() for s in tabular.SPLITS)
    positive = train_raw[train_raw[:, 0] == 1, 1:]
    assert len(train) + len(validation) == len(positive) and len(validation) == int(0.1 * len(positive))
    assert len(test) == int((test_raw[:, 0] == 1).sum())
    assert train.shape[1] == 21  # the 7 features whose smallest value repeats are dropped
    both = np.vstack([train, validation])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(both.std(0, ddof=1), 1, atol=1e-6)
    kept = positive[:, 7:]
    expected = (test_raw[test_raw[:, 0] == 1, 8:-1] - kept.mean(0)) / kept.std(0, ddof=1)  # train statistics
    np.testing.assert_allclose(test, expected, atol=1e-5)


def test_miniboone_zscore_with_train_and_validation(root):
    base, raw = root
    train, validation, test = (tabular.load("miniboone", s, root=base).double().numpy() for s in tabular.SPLITS)
    both = np.vstack([train, validation])
    np.testing.assert_allclose(both.mean(0), 0, atol=1e-6)
    np.testing.assert_allclose(both.std(0), 1, atol=1e-6)
    rest = raw["miniboone"][:900]
    np.testing.assert_allclose(test, (raw["miniboone"][900:] - rest.mean(0)) / rest.std(0), atol=1e-5)


def test_bsds300_reads_the_hdf5_splits(tmp_path):
    h5py = pytest.importorskip("h5py")
    folder = tmp_path / "maf" / "BSDS300"
    folder.mkdir(parents=True)
    arrays = {key: np.random.default_rng(i).normal(size=(n, 63)) for i, (key, n) in
              enumerate([("train", 50), ("validation", 20), ("test", 30)])}
    with h5py.File(folder / "BSDS300.hdf5", "w") as handle:
        for key, value in arrays.items():
            handle[key] = value
    for key, value in arrays.items():
        out = tabular.load("bsds300", key, root=tmp_path)
        assert out.dtype == torch.float32 and out.shape == value.shape
        np.testing.assert_allclose(out.numpy(), value, rtol=1e-6)


def test_bsds300_without_h5py_says_what_to_install(tmp_path):
    try:
        import h5py  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install h5py"):
            tabular.bsds300(tmp_path / "BSDS300.hdf5")
    else:
        pytest.skip("h5py is installed")


def test_missing_files_name_the_download_command(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="python -m cnflib.data download gas --root"):
        tabular.load("gas", "train", root=tmp_path)
    monkeypatch.setenv("CNFLIB_DATA", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"python -m cnflib.data download hepmass\n") as info:
        tabular.load("hepmass", "test")
    assert str(tmp_path) in str(info.value)


def test_env_var_moves_the_data_directory(root, monkeypatch):
    base, _ = root
    monkeypatch.setenv("CNFLIB_DATA", str(base))
    assert tabular.load("miniboone", "validation").shape == (90, 43)


def test_unknown_names_list_the_valid_ones(root):
    base, _ = root
    with pytest.raises(ValueError, match="valid: power, gas, hepmass, miniboone, bsds300"):
        tabular.load("POWERS", "train", root=base)
    with pytest.raises(ValueError, match="valid: train, validation, test"):
        tabular.load("power", "valid", root=base)
    with pytest.raises(ValueError, match="valid: power"):
        tabular.dim("cifar")
