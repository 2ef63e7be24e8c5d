"""Notebook presets: ``tutorial`` (CPU, minutes) and ``full`` (paper scale, GPU)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional, Union

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


def configure_trainer(preset: str, accelerator: Optional[str] = None, devices: Union[int, str, None] = None,
                      num_nodes: Optional[int] = None, strategy: Optional[str] = None) -> dict[str, Any]:
    """Set the Lightning ``Trainer`` settings of every :func:`cnflib.train.fit` call in a notebook.

    Named settings (papermill parameters) win; otherwise ``tutorial`` trains on the CPU and ``full``
    on whatever accelerator is present (``auto``). In a notebook, multi-GPU data parallelism is
    ``strategy="ddp_notebook"`` (Lightning's ``ddp`` cannot start from an interactive kernel).
    Returns the settings now in force.
    """
    from cnflib.train import set_trainer_defaults

    check_choice("preset", preset, PRESETS)
    return set_trainer_defaults(accelerator=accelerator or ("auto" if preset == "full" else "cpu"), devices=devices,
                                num_nodes=num_nodes, strategy=strategy)
