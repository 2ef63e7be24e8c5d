"""Notebook presets: ``tutorial`` (CPU, minutes) and ``full`` (paper scale, GPU)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import torch

from cnflib._validation import check_choice

PRESETS: tuple[str, ...] = ("tutorial", "full")


def resolve(preset: str, *, tutorial: dict[str, Any], full: dict[str, Any], **overrides: Any) -> SimpleNamespace:
    """The settings of ``preset``, with every non-None override (e.g. papermill parameters) applied.

    ``tutorial`` and ``full`` must name the same settings, so that a typo cannot hide in one.
    """
    check_choice("preset", preset, PRESETS)
    if set(tutorial) != set(full):
        raise ValueError(f"presets disagree on their settings: {sorted(set(tutorial) ^ set(full))}")
    settings = dict(tutorial if preset == "tutorial" else full)
    unknown = [k for k, v in overrides.items() if v is not None and k not in settings]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {', '.join(sorted(settings))}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return SimpleNamespace(preset=preset, **settings)


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
