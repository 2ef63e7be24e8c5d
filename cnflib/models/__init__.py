"""Reusable architectures on the core: Neural ODE classifiers (ANODE augmentation) and a
weight-shared ResNet, FFJORD's multiscale image CNF and the image flow around it, Glow and the
generic flow sequence, stacked CNF blocks, and the Latent ODE."""
from cnflib.models.glow import FlowSequence, glow
from cnflib.models.image_cnf import ConcatSquashConv2d, ConvODENet, MultiscaleCNF
from cnflib.models.image_flow import ImageFlow, ImageRun, evaluate, image_flow_loss, train_image_flow
from cnflib.models.latent_ode import LatentODE, elbo_loss, trajectory_mse
from cnflib.models.node import ODEClassifier, ResNet, accuracy, classification_loss, gradient_cost
from cnflib.models.stacked_cnf import CNFLayer, stacked_cnf

__all__ = [
    "FlowSequence", "glow", "ConcatSquashConv2d", "ConvODENet", "MultiscaleCNF",
    "ImageFlow", "ImageRun", "evaluate", "image_flow_loss", "train_image_flow",
    "LatentODE", "elbo_loss", "trajectory_mse",
    "ODEClassifier", "ResNet", "accuracy", "classification_loss", "gradient_cost",
    "CNFLayer", "stacked_cnf",
]
