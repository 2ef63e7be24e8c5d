"""Sparse Flows (Liebenwein et al. 2021): unstructured and structured pruning masks that survive
training and saving, prune-retrain sweeps, the mode-collapse metric and Hessian spectra."""
from cnflib.sparse.hessian import (EIGENSOLVERS, TRACE_ESTIMATORS, ExtremeEigenvalues, HessianStats, extreme_eigenvalues,
                                   flow_hessian, hessian_stats, hutchinson_trace, hutchpp_trace, lanczos, loss_hvp,
                                   power_iteration, spectrum_convergence)
from cnflib.sparse.modes import LEVELS, METRICS, ModeReport, Modes, mass_kl, mode_report, mode_table
from cnflib.sparse.pruning import (METHODS, ParameterCount, PruneSweep, clone, count_parameters, effective,
                                   effective_parameters, prunable_layers, prune_model, prune_retrain, prune_structured,
                                   prune_unstructured, restore_masks)

__all__ = [
    "EIGENSOLVERS", "TRACE_ESTIMATORS", "ExtremeEigenvalues", "HessianStats", "extreme_eigenvalues", "flow_hessian",
    "hessian_stats", "hutchinson_trace", "hutchpp_trace", "lanczos", "loss_hvp", "power_iteration",
    "spectrum_convergence",
    "LEVELS", "METRICS", "ModeReport", "Modes", "mass_kl", "mode_report", "mode_table",
    "METHODS", "ParameterCount", "PruneSweep", "clone", "count_parameters", "effective", "effective_parameters",
    "prunable_layers", "prune_model", "prune_retrain", "prune_structured", "prune_unstructured", "restore_masks",
]
