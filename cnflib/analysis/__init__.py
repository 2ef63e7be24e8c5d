"""Analysis of trained flows: the mode-collapse metric and the loss-surface curvature (Hessian)."""
from cnflib.analysis.hessian import (HessianStats, flow_hessian, hessian_stats, hutchinson_trace, lanczos, loss_hvp,
                                     power_iteration)
from cnflib.analysis.modes import LEVELS, ModeReport, Modes, mode_report, mode_table

__all__ = [
    "HessianStats", "flow_hessian", "hessian_stats", "hutchinson_trace", "lanczos", "loss_hvp", "power_iteration",
    "LEVELS", "ModeReport", "Modes", "mode_report", "mode_table",
]
