"""Datasets: 2-D toy sets (:mod:`cnflib.data.toy`) and train/test splits."""
from cnflib.data import toy
from cnflib.data.toy import NAMES, modes, sample

__all__ = ["toy", "NAMES", "modes", "sample"]
