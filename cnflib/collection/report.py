"""Where a notebook's results go when it runs as a job: metrics.json and PNG figures.

The runner (``python -m cnflib.collection.run_notebooks``) sets ``CNFLIB_OUTPUT_DIR`` for each notebook;
interactively it is unset and these helpers only display.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Optional

OUTPUT_ENV = "CNFLIB_OUTPUT_DIR"
CHECKPOINT_ENV = "CNFLIB_CHECKPOINT_DIR"


def output_dir() -> Optional[Path]:
    """The folder for this run's outputs, or ``None`` outside the runner."""
    value = os.environ.get(OUTPUT_ENV)
    if not value:
        return None
    path = Path(value)
    path.mkdir(parents=True, exist_ok=True)
    return path


def checkpoint_dir() -> Optional[Path]:
    """The folder for this run's checkpoints and training logs: ``$CNFLIB_CHECKPOINT_DIR`` (set by
    the runner and the sweeps, or by hand for an interactive run), else ``<output dir>/checkpoints``
    when running as a job, else ``None``."""
    value = os.environ.get(CHECKPOINT_ENV)
    if value:
        return Path(value)
    folder = output_dir()
    return folder / "checkpoints" if folder is not None else None


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def record_metrics(**metrics) -> dict:
    """Add key results to the notebook's ``metrics.json`` (merged with earlier calls).

    Values are numbers, strings or booleans (tensors and NumPy scalars are converted).
    Returns everything recorded so far in this run.
    """
    clean = {k: _plain(v) for k, v in metrics.items()}
    folder = output_dir()
    if folder is None:
        return clean
    path = folder / "metrics.json"
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(clean)
    path.write_text(json.dumps(merged, indent=2))  # insertion order: the first recorded are the key ones
    return merged


def save_figure(fig, name: str, dpi: int = 90) -> Optional[Path]:
    """Save ``fig`` as ``<output dir>/<name>.png`` when running as a job; returns the path."""
    folder = output_dir()
    if folder is None:
        return None
    path = folder / f"{name}.png"
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
