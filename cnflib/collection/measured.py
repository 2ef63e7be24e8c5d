"""Measurements that ship in ``data/``: the sweeps and searches that notebooks plot and assert on.

Each such table is a CSV written by a command of this repository (a sweep's ``points.csv``, a
benchmark's grid) and documented in ``data/README.md``. A notebook reads it by name with
:func:`read_measured`; if it is missing, the error names the command that makes it.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

from cnflib.core._paths import project_root

if TYPE_CHECKING:
    import pandas as pd


def read_measured(name: str, made_by: str, root: Optional[Path] = None) -> "pd.DataFrame":
    """The table ``data/<name>`` (a CSV) of the checkout, as a DataFrame.

    name: the file name, e.g. ``"latent_ode_seeds.csv"``.
    made_by: the command that writes it, quoted in the error when the file is missing.
    root: the checkout (default: :func:`cnflib.core._paths.project_root`).
    """
    import pandas as pd

    if not name.endswith(".csv"):
        raise ValueError(f"measured tables are CSV files; got {name!r} (valid: a name ending in .csv)")
    path = (root or project_root()) / "data" / name
    if not path.is_file():
        raise FileNotFoundError(f"data/{name} is missing; it is made by: {made_by} (data/README.md says more)")
    return pd.read_csv(path)
