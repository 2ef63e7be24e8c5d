"""cnflib: continuous-depth generative models on torchdyn, the library under the notebooks.

Layers, each importing only those above it in this list:

* :mod:`cnflib.core`: the torchdyn wrapper, ``CNF``, ``FlowOutput``, vector fields, base
  distributions, image transforms, density checks, ``fit``;
* :mod:`cnflib.data`: generated and downloaded data sets (uses the core only);
* :mod:`cnflib.models`: reusable architectures (Neural ODE classifiers, the multiscale image CNF,
  Glow, stacked CNFs, the Latent ODE);
* one package per paper: :mod:`cnflib.rnode`, :mod:`cnflib.infocnf`, :mod:`cnflib.parts`,
  :mod:`cnflib.sparse`;
* :mod:`cnflib.collection`: presets, reports, plots, the notebook runner and sweeps.
"""
from cnflib.core import (CNF, ConcatSquashMLP, FlowOutput, StandardNormal, StepBudgetExceeded, TimeConcatMLP, fit,
                         flow_loss, mean_nll, neural_ode)

__version__ = "0.1.0"
__all__ = [
    "CNF", "ConcatSquashMLP", "FlowOutput", "StandardNormal", "StepBudgetExceeded", "TimeConcatMLP", "fit",
    "flow_loss", "mean_nll", "neural_ode", "__version__",
]
