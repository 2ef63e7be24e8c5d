"""Datasets: 2-D toy sets, classification sets and time series (all generated, no download)."""
from cnflib.data import toy
from cnflib.data.classification import best_threshold_accuracy, nested_annuli
from cnflib.data.timeseries import SpiralData, SpiralSplit, make_spirals, spiral_paths, standardize_labels
from cnflib.data.toy import NAMES, modes, sample

__all__ = [
    "toy", "NAMES", "modes", "sample", "best_threshold_accuracy", "nested_annuli",
    "SpiralData", "SpiralSplit", "make_spirals", "spiral_paths", "standardize_labels",
]
