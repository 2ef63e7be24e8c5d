"""Datasets: generated 2-D toy sets, classification sets and time series; scikit-learn's digits;
and loaders of the downloaded sets (MAF tabular sets, MNIST, CIFAR-10; see ``python -m cnflib.data``)."""
from cnflib.data import download, images, tabular, toy
from cnflib.data.classification import best_threshold_accuracy, nested_annuli
from cnflib.data.timeseries import SpiralData, SpiralSplit, make_spirals, spiral_paths, standardize_labels
from cnflib.data.toy import NAMES, modes, sample
from cnflib.data.vectors import vector_splits

__all__ = [
    "download", "images", "tabular", "toy", "NAMES", "modes", "sample", "vector_splits",
    "best_threshold_accuracy", "nested_annuli",
    "SpiralData", "SpiralSplit", "make_spirals", "spiral_paths", "standardize_labels",
]
