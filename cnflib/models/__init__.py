"""Models: time-dependent vector fields, continuous normalizing flows and Neural ODE classifiers."""
from cnflib.models.cnf import CNF, CNFDynamics, FlowOutput, Regularizer, SolverOptions, standard_normal_log_prob
from cnflib.models.latent_ode import LatentODE, PartitionedLatentODE, elbo_loss, trajectory_mse
from cnflib.models.node import ODEClassifier, ResNet, accuracy, classification_loss
from cnflib.models.vector_fields import ACTIVATIONS, ConcatSquashLinear, ConcatSquashMLP, TimeConcatMLP

__all__ = [
    "CNF", "CNFDynamics", "FlowOutput", "Regularizer", "SolverOptions", "standard_normal_log_prob",
    "LatentODE", "PartitionedLatentODE", "elbo_loss", "trajectory_mse",
    "ODEClassifier", "ResNet", "accuracy", "classification_loss",
    "ACTIVATIONS", "ConcatSquashLinear", "ConcatSquashMLP", "TimeConcatMLP",
]
