"""Vector data sets by name: the generated 2-D toy sets and the tabular MAF sets, one entry point."""
from __future__ import annotations

import torch
from torch import Tensor

from cnflib.data import toy


def vector_splits(dataset: str, n_train: int, n_test: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Train [n_train, D] and test [n_test, D] points of ``dataset``.

    A toy set (:mod:`cnflib.data.toy`) is generated with ``seed``; a tabular set
    (:mod:`cnflib.data.tabular`, downloaded) gives its whole train split (``n_train`` is ignored)
    and ``n_test`` test points drawn with ``seed``.
    """
    if dataset in toy.NAMES:
        return toy.splits(dataset, n_train, n_test, seed)
    from cnflib.data import tabular

    if dataset not in tabular.NAMES:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {', '.join([*toy.NAMES, *tabular.NAMES])}")
    test = tabular.load(dataset, "test")
    pick = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n_test]
    return tabular.load(dataset, "train"), test[pick]
