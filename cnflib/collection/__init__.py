"""The collection's tooling: presets and trainer settings, metrics and figures for the runner, shared
plots, the papermill notebook runner (``bash ci/notebooks.sh``) and parameter sweeps."""
from cnflib.collection import plot, presets, report, run_notebooks, sweep

__all__ = ["plot", "presets", "report", "run_notebooks", "sweep"]
