"""cnflib: continuous-depth generative models on torchdyn, the library under the notebooks."""
from cnflib.odes import StepBudgetExceeded

__version__ = "0.1.0"
__all__ = ["StepBudgetExceeded", "__version__"]
