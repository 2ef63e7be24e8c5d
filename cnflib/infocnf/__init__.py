"""InfoCNF (Nguyen et al.): conditional priors with a partitioned latent code (CCNF and InfoCNF),
tolerance gates trained by REINFORCE, the image runs of notebook 04 and the partitioned Latent ODE
of notebook 05 (App. E)."""
from cnflib.infocnf.gates import ConvGate, MLPGate, ToleranceGates, discounted_returns, image_gates, reinforce_surrogate
from cnflib.infocnf.latent_ode import PartitionedLatentODE
from cnflib.infocnf.priors import ConditionalPrior, ccnf_prior, infocnf_prior, parameter_count
from cnflib.infocnf.runs import (EXACT_TRACE_MAX_DIM, KINDS, build_model, conditional_metrics, evaluate_infocnf,
                                 evaluation_trace, infocnf_loss, prior_parameter_counts, train_image_flow)

__all__ = [
    "ConvGate", "MLPGate", "ToleranceGates", "discounted_returns", "image_gates", "reinforce_surrogate",
    "PartitionedLatentODE", "ConditionalPrior", "ccnf_prior", "infocnf_prior", "parameter_count",
    "EXACT_TRACE_MAX_DIM", "KINDS", "build_model", "conditional_metrics", "evaluate_infocnf", "evaluation_trace",
    "infocnf_loss", "prior_parameter_counts",
    "train_image_flow",
]
