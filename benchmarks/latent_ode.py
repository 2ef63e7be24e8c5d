"""Latent ODE training cost: rk4 on the observation grid vs dopri5 (autograd and adjoint), both models.

Prints, per variant, seconds per training step, forward/backward NFE per step, peak RSS growth and
the negative ELBO after a few steps on the tutorial-size spiral set (notebook 05).

    python benchmarks/latent_ode.py [--steps 20] [--window 50]
"""
from __future__ import annotations

import argparse
import resource
import time

import pandas as pd
import torch

from cnflib.data.timeseries import make_spirals, standardize_labels
from cnflib.infocnf.latent_ode import PartitionedLatentODE
from cnflib.models.latent_ode import LatentODE, elbo_loss
from cnflib.core.train import fit, seed_everything

VARIANTS = [  # (model, solver, sensitivity)
    ("baseline", "rk4", "autograd"),
    ("partitioned", "rk4", "autograd"),
    ("baseline", "dopri5", "autograd"),
    ("baseline", "dopri5", "adjoint"),
]


def main(steps: int = 20, window: int = 50, seed: int = 0) -> pd.DataFrame:
    torch.set_num_threads(1)
    n_total = 5 * window  # the notebook's ratio: a window is 1/5 of the path
    data = make_spirals(600, n_total, window, window // 2, test_fraction=0.4, generator=torch.Generator().manual_seed(seed))
    batch = (data.train.observed, standardize_labels(data.train.labels))
    rows = []
    for kind, solver, sensitivity in VARIANTS:
        seed_everything(seed)
        cls = LatentODE if kind == "baseline" else PartitionedLatentODE
        model = cls(solver=solver, sensitivity=sensitivity, atol=1e-5, rtol=1e-5)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        start = time.perf_counter()
        h = fit(model, batch, steps=steps, loss=elbo_loss(data.t_observed, head_weight=10.0), batch_size=100,
                lr=1e-2, seed=seed, progress=False)
        rows.append({"model": kind, "solver": solver, "sensitivity": sensitivity,
                     "s/step": (time.perf_counter() - start) / steps,
                     "NFE fwd/step": h["nfe_forward"].mean(), "NFE bwd/step": h["nfe_backward"].mean(),
                     "peak RSS growth (MB)": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024,
                     "neg ELBO (last 5)": h["neg_elbo"].iloc[-5:].mean()})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--window", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(main(args.steps, args.window, args.seed).round(3).to_string(index=False))
