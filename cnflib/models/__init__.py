"""Models: time-dependent vector fields, continuous normalizing flows (vector and multiscale image),
conditional priors, Glow, and Neural ODE classifiers and Latent ODEs."""
from cnflib.models.cnf import CNF, CNFDynamics, FlowOutput, Regularizer, SolverOptions, standard_normal_log_prob
from cnflib.models.conditional import ConditionalPrior, ccnf_prior, infocnf_prior
from cnflib.models.glow import FlowSequence, glow
from cnflib.models.image_cnf import ConvODENet, MultiscaleCNF
from cnflib.models.latent_ode import LatentODE, PartitionedLatentODE, elbo_loss, trajectory_mse
from cnflib.models.node import ODEClassifier, ResNet, accuracy, classification_loss
from cnflib.models.vector_fields import ACTIVATIONS, ConcatSquashLinear, ConcatSquashMLP, TimeConcatMLP

__all__ = [
    "CNF", "CNFDynamics", "FlowOutput", "Regularizer", "SolverOptions", "standard_normal_log_prob",
    "ConditionalPrior", "ccnf_prior", "infocnf_prior", "ConvODENet", "MultiscaleCNF", "FlowSequence", "glow",
    "LatentODE", "PartitionedLatentODE", "elbo_loss", "trajectory_mse",
    "ODEClassifier", "ResNet", "accuracy", "classification_loss",
    "ACTIVATIONS", "ConcatSquashLinear", "ConcatSquashMLP", "TimeConcatMLP",
]
