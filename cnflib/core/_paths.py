"""Where cnflib finds its files: the checkout it runs from (if any) and its packaged data.

A checkout (``git clone``, ``pip install -e .``) has ``pyproject.toml`` and ``notebooks/`` next to
the package; a wheel installed into site-packages has neither, and the defaults that used the
checkout (outputs, notebooks, downloaded data) fall back to the current directory or a user cache.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Optional


def checkout() -> Optional[Path]:
    """The root of the cnflib checkout this package is imported from, or ``None`` (an installed wheel)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir() else None


def project_root() -> Path:
    """The checkout, else the current directory: the base of ``outputs/`` and ``notebooks/`` defaults."""
    return checkout() or Path.cwd()


def package_file(package: str, name: str) -> Path:
    """A data file shipped inside ``package`` (e.g. ``cnflib.data``, ``checksums.json``), found with
    :mod:`importlib.resources` so that it is there in a checkout and in an installed wheel alike."""
    path = resources.files(package).joinpath(name)
    if not path.is_file():
        raise FileNotFoundError(f"{name} is missing from the package {package} ({path})")
    return Path(str(path))
