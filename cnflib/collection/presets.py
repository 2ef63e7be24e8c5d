"""Notebook presets: ``tutorial`` (CPU, minutes) and ``full`` (paper scale, GPU)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional, Union

import torch

from cnflib.core._validation import check_choice

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


def configure_trainer(preset: str, accelerator: Optional[str] = None, devices: Union[int, str, None] = None,
                      num_nodes: Optional[int] = None, strategy: Optional[str] = None) -> dict[str, Any]:
    """The Lightning ``Trainer`` settings that a notebook passes to every :func:`cnflib.core.train.fit`
    (``fit(..., **trainer)``) and to every runner that calls it.

    Named settings (papermill parameters) win; otherwise ``tutorial`` trains on the CPU and ``full``
    on whatever accelerator is present (``auto``), on 1 device and 1 node with Lightning's ``auto``
    strategy. In a notebook, multi-GPU data parallelism is ``strategy="ddp_notebook"`` (Lightning's
    ``ddp`` cannot start from an interactive kernel).
    """
    check_choice("preset", preset, PRESETS)
    return {"accelerator": accelerator or ("auto" if preset == "full" else "cpu"), "devices": devices or 1,
            "num_nodes": num_nodes or 1, "strategy": strategy or "auto"}
