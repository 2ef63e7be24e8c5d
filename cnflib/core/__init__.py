"""What every notebook stands on: torchdyn's ``NeuralODE`` with explicit settings, NFE counters and
a step budget (:mod:`~cnflib.core.odes`); continuous normalizing flows (:mod:`~cnflib.core.cnf`),
the one flow result type (:mod:`~cnflib.core.flow`), vector fields, base distributions, image
transforms, density checks and the one training loop, :func:`~cnflib.core.train.fit`."""
from cnflib.core.cnf import CNF, CNFDynamics, Regularizer, SolverOptions, exact_divergence
from cnflib.core.density import (gaussian_fit_log_prob, grid_mass, hutchinson_variance, mean_nll, nll_evaluator,
                                 sliced_wasserstein)
from cnflib.core.distributions import (StandardNormal, diagonal_gaussian_log_prob, gaussian_kl, gaussian_log_likelihood,
                                       standard_normal_log_prob)
from cnflib.core.flow import BaseDistribution, FlowOutput
from cnflib.core.odes import BudgetedField, CountingField, StepBudgetExceeded, neural_ode, solve
from cnflib.core.train import draw_batch, fit, flow_loss, late_mean, seed_everything, step_seed
from cnflib.core.transforms import bits_per_dim, dequantize, dequantize_centred, inverse_logit_transform, logit_transform, squeeze, unsqueeze
from cnflib.core.vector_fields import ACTIVATIONS, ConcatSquashLinear, ConcatSquashMLP, ConcatSquashStack, TimeConcatMLP

__all__ = [
    "CNF", "CNFDynamics", "Regularizer", "SolverOptions", "exact_divergence",
    "gaussian_fit_log_prob", "grid_mass", "hutchinson_variance", "mean_nll", "nll_evaluator", "sliced_wasserstein",
    "StandardNormal", "diagonal_gaussian_log_prob", "gaussian_kl", "gaussian_log_likelihood", "standard_normal_log_prob",
    "BaseDistribution", "FlowOutput",
    "BudgetedField", "CountingField", "StepBudgetExceeded", "neural_ode", "solve",
    "draw_batch", "fit", "flow_loss", "late_mean", "seed_everything", "step_seed",
    "bits_per_dim", "dequantize", "dequantize_centred", "inverse_logit_transform", "logit_transform", "squeeze", "unsqueeze",
    "ACTIVATIONS", "ConcatSquashLinear", "ConcatSquashMLP", "ConcatSquashStack", "TimeConcatMLP",
]
