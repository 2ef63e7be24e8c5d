"""RNODE (Finlay et al. 2020): the kinetic-energy and Jacobian-Frobenius regularizers integrated in
the CNF's solve, path straightness, and the vanilla-vs-RNODE runs of notebook 03."""
from cnflib.rnode.regularizers import JacobianFrobenius, KineticEnergy, rnode_regularizers
from cnflib.rnode.runs import (IMAGE_SETS, FlowRun, ImageFlowRun, common_probes, cost_to_reach, count_backward, exact_image_evaluation, fixed_steps,
                              path_measures, solved_by, summarize, summarize_images, train_flow, train_image_flow,
                              training_sensitivity, validation_points)
from cnflib.rnode.straightness import chord_length, kinetic_ratio, path_length, straightness

__all__ = [
    "JacobianFrobenius", "KineticEnergy", "rnode_regularizers",
    "IMAGE_SETS", "FlowRun", "ImageFlowRun", "common_probes", "cost_to_reach", "exact_image_evaluation", "fixed_steps", "path_measures",
    "solved_by", "summarize", "summarize_images", "train_flow", "train_image_flow", "training_sensitivity",
    "validation_points", "count_backward",
    "chord_length", "kinetic_ratio", "path_length", "straightness",
]
