"""The collection's tooling: presets and trainer settings, metrics and figures for the runner, shared
plots; the papermill notebook runner (``python -m cnflib.collection.run_notebooks``, behind
``bash ci/notebooks.sh``) and parameter sweeps (``python -m cnflib.collection.sweep``), which are
imported on their own so that ``python -m`` runs them cleanly."""
from cnflib.collection import plot, presets, report

__all__ = ["plot", "presets", "report"]
