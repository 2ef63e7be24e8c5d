"""Notebook presets: ``tutorial`` (CPU, minutes) and ``full`` (paper scale, GPU), and the full preset's
smoke mode (every code path of ``full`` at capped sizes, minutes on a CPU)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Optional, Union

import torch

from cnflib.core._validation import check_choice

PRESETS: tuple[str, ...] = ("tutorial", "full")
CHECKPOINT_EVERY = 100  # steps between the checkpoints of every fit under the ``full`` preset


def resolve(preset: str, *, tutorial: dict[str, Any], full: dict[str, Any],
            smoke_caps: Optional[dict[str, Any]] = None, smoke: bool = False, **overrides: Any) -> SimpleNamespace:
    """The settings of ``preset``, with every non-None override (e.g. papermill parameters) applied.

    ``tutorial`` and ``full`` must name the same settings, so that a typo cannot hide in one.
    ``smoke=True`` (papermill ``-p preset full -p smoke True``) is the full preset's smoke mode: the
    same models, data, losses and evaluations, with ``smoke_caps`` replacing the settings that set
    its cost (steps, batch and evaluation sizes, sample counts), so that the whole notebook runs
    in minutes on a CPU. A dict-valued setting is capped key by key (``image=dict(steps=2)`` keeps
    the other keys of the full preset's ``image``). ``smoke_caps`` may only name settings (and keys)
    that the presets have, whether or not ``smoke`` is on. Overrides apply after the caps.
    The result's ``smoke`` tells whether the caps are in force.
    """
    check_choice("preset", preset, PRESETS)
    if set(tutorial) != set(full):
        raise ValueError(f"presets disagree on their settings: {sorted(set(tutorial) ^ set(full))}")
    caps = _capped(full, smoke_caps or {}, "smoke_caps")
    if smoke and preset != "full":
        raise ValueError(f"smoke mode caps the full preset: use preset='full' with smoke=True, not {preset!r}")
    if smoke and not smoke_caps:
        raise ValueError("smoke=True needs the notebook's smoke_caps (the settings it caps)")
    settings = caps if smoke else dict(tutorial if preset == "tutorial" else full)
    unknown = [k for k, v in overrides.items() if v is not None and k not in settings]
    if unknown:
        raise ValueError(f"unknown settings {unknown}; valid: {', '.join(sorted(settings))}")
    settings.update({k: v for k, v in overrides.items() if v is not None})
    return SimpleNamespace(preset=preset, smoke=bool(smoke), **settings)


def _capped(settings: dict[str, Any], caps: dict[str, Any], where: str) -> dict[str, Any]:
    """``settings`` with ``caps`` applied; a dict-valued setting is capped key by key. Unknown names raise."""
    unknown = sorted(set(caps) - set(settings))
    if unknown:
        raise ValueError(f"{where} names unknown settings {unknown}; valid: {', '.join(sorted(settings))}")
    out = dict(settings)
    for key, cap in caps.items():
        if isinstance(cap, dict) and isinstance(settings[key], dict):
            out[key] = _capped(settings[key], cap, f"{where}[{key!r}]")
        else:
            out[key] = cap
    return out


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def configure_trainer(preset: str, accelerator: Optional[str] = None, devices: Union[int, str, None] = None,
                      num_nodes: Optional[int] = None, strategy: Optional[str] = None,
                      checkpoint_every: Optional[int] = None) -> dict[str, Any]:
    """The Lightning ``Trainer`` settings that a notebook passes to every :func:`cnflib.core.train.fit`
    (``fit(..., **trainer)``) and to every runner that calls it.

    Named settings (papermill parameters) win; otherwise ``tutorial`` trains on the CPU and ``full``
    on whatever accelerator is present (``auto``), on 1 device and 1 node with Lightning's ``auto``
    strategy. In a notebook, multi-GPU data parallelism is ``strategy="ddp_notebook"`` (Lightning's
    ``ddp`` cannot start from an interactive kernel).

    Under ``full`` the settings also hold ``checkpoints``, a :class:`~cnflib.core.train.RunCheckpoints`
    in :func:`cnflib.collection.report.checkpoint_dir` (the sweep point's or the runner's folder;
    set ``CNFLIB_CHECKPOINT_DIR`` for an interactive run): every fit given them checkpoints every
    ``checkpoint_every`` steps (default :data:`CHECKPOINT_EVERY`) and at its end, and logs its
    history there, so that re-running the notebook (or the sweep) resumes where it stopped.
    """
    from cnflib.collection.report import checkpoint_dir
    from cnflib.core.train import RunCheckpoints

    check_choice("preset", preset, PRESETS)
    settings: dict[str, Any] = {"accelerator": accelerator or ("auto" if preset == "full" else "cpu"),
                                "devices": devices or 1, "num_nodes": num_nodes or 1, "strategy": strategy or "auto"}
    folder = checkpoint_dir() if preset == "full" else None
    if folder is not None:
        settings["checkpoints"] = RunCheckpoints(folder, CHECKPOINT_EVERY if checkpoint_every is None else checkpoint_every)
    if preset == "full":
        print(f"[cnflib] every fit checkpoints into {folder} (a re-run resumes)" if folder else
              "[cnflib] no checkpoints: not run by the runner or a sweep, and CNFLIB_CHECKPOINT_DIR is unset")
    return settings
