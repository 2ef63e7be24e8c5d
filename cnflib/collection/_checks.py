"""Checks of what the runner and the sweep are given, made before any notebook runs: parameter
names against the notebook's ``parameters`` cell, preset names, and each point's ``metrics.json``."""
from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any, Iterable

from cnflib.core._validation import check_choice


def notebook_parameters(notebook: Path) -> dict[str, Any]:
    """The variables of ``notebook``'s cell tagged ``parameters`` and their default values
    (``papermill.inspect_notebook``). Defaults that are not Python literals are returned as their
    source text."""
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    if not found:
        raise ValueError(f"{notebook.name} has no cell tagged 'parameters'")
    values: dict[str, Any] = {}
    for name, info in found.items():
        try:
            values[name] = ast.literal_eval(info["default"])
        except (ValueError, SyntaxError):
            values[name] = info["default"]
    return values


def check_parameters(names: Iterable[str], notebook: Path) -> None:
    """Raise ValueError naming every entry of ``names`` that ``notebook``'s parameters cell lacks."""
    valid = notebook_parameters(notebook)
    unknown = [n for n in names if n not in valid]
    if unknown:
        raise ValueError(f"unknown parameters {unknown} for {notebook.stem}; valid: {', '.join(valid)}")


def check_presets(values: Iterable[Any]) -> None:
    """Raise ValueError if a value given to a notebook's ``preset`` parameter is not a preset."""
    from cnflib.collection.presets import PRESETS

    for value in values:
        check_choice("preset", value, PRESETS)


def check_run(parameters: dict[str, Any], notebooks: Iterable[Path]) -> None:
    """Everything the runner passes (``-p NAME VALUE``) must be declared by every notebook it runs."""
    if "preset" in parameters:
        check_presets([parameters["preset"]])
    if parameters:
        for notebook in notebooks:
            check_parameters(parameters, notebook)


def read_metrics(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; ValueError naming the file if it is unreadable or not an object."""
    try:
        metrics = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is unreadable ({type(error).__name__}: {error})") from None
    if not isinstance(metrics, dict):
        raise ValueError(f"{path} holds a {type(metrics).__name__}, not a JSON object of metrics")
    return metrics
