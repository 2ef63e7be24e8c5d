"""Flow matching (Lipman et al. 2023; Liu et al. 2023; Tong et al. 2024): simulation-free training of a
CNF's vector field by regression onto the velocity of a probability path, with independent (CFM / I-CFM)
or minibatch optimal-transport (OT-CFM) couplings, and the runs of notebook 08."""
from cnflib.flowmatching.couplings import COUPLINGS, couple, ot_assignment, squared_distances, transport_cost
from cnflib.flowmatching.losses import cfm_loss
from cnflib.flowmatching.paths import conditional_path, gaussian_marginal, gaussian_marginal_velocity
from cnflib.flowmatching.runs import few_step_quality, sample_with, train_matching

__all__ = [
    "COUPLINGS", "couple", "ot_assignment", "squared_distances", "transport_cost",
    "cfm_loss",
    "conditional_path", "gaussian_marginal", "gaussian_marginal_velocity",
    "few_step_quality", "sample_with", "train_matching",
]
