"""Shared test fixtures: deterministic seeds and one thread per test process."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
