"""Models: time-dependent vector fields and continuous normalizing flows."""
from cnflib.models.cnf import CNF, CNFDynamics, FlowOutput, Regularizer, SolverOptions, standard_normal_log_prob
from cnflib.models.vector_fields import ACTIVATIONS, ConcatSquashLinear, ConcatSquashMLP, TimeConcatMLP

__all__ = [
    "CNF", "CNFDynamics", "FlowOutput", "Regularizer", "SolverOptions", "standard_normal_log_prob",
    "ACTIVATIONS", "ConcatSquashLinear", "ConcatSquashMLP", "TimeConcatMLP",
]
