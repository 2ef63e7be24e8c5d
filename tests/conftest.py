"""Shared test fixtures: deterministic seeds, and a linear vector field with closed-form flows."""
from typing import Callable

import pytest
import torch
from torch import nn


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


class LinearField(nn.Module):
    """f(t, z) = A z (z: [n, D] -> [n, D]): the flow is z(T) = exp(TA) z(0) and log|det| = T tr(A)."""

    def __init__(self, A: torch.Tensor) -> None:
        super().__init__()
        self.A = nn.Parameter(A.clone())
        self.dim = A.shape[0]

    def forward(self, t: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z @ self.A.T


@pytest.fixture
def linear_field() -> Callable[[torch.Tensor], LinearField]:
    """A factory: ``linear_field(A)`` is the field ``f(t, z) = A z`` with ``A`` a trainable parameter."""
    return LinearField


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "smoke: the full presets' smoke run (minutes); deselect with -m 'not smoke'")
