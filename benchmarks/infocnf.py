"""CCNF vs InfoCNF (fixed tolerance) vs InfoCNF (learned tolerances) on 8x8 digits, in one run.

Prints, per model: seconds per training step and per epoch (train set / batch size steps),
forward NFE per training step (all blocks, last 20% of training), test NFE / bits-per-dim / error
at the fixed evaluation tolerance and at the model's own (learned) tolerances, and parameter counts.

    OMP_NUM_THREADS=1 python benchmarks/infocnf.py [--steps 80] [--seed 0]

Settings are those of notebook 04's tutorial preset (gates: range [1e-6, 1e-4] around the fixed
1e-5, gain 20, initial policy std 1, NFE cost eta 0.5).

Timings are only comparable on an otherwise idle machine: the load is printed with the table.
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from cnflib.core.train import late_mean
from cnflib.data.images import digits
from cnflib.infocnf import evaluate_infocnf as evaluate, prior_parameter_counts, train_image_flow

VARIANTS = {  # label: (kind, gated)
    "CCNF": ("ccnf", False),
    "InfoCNF fixed": ("infocnf", False),
    "InfoCNF learned": ("infocnf", True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tol", type=float, default=1e-5, help="training tolerance of the fixed-tolerance models")
    parser.add_argument("--eval-tol", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, test = digits("train"), digits("test")
    rows = []
    for label, (kind, gated) in VARIANTS.items():
        run = train_image_flow(label, kind, train, test, gated=gated, steps=args.steps, batch_size=args.batch_size,
                               seed=args.seed, model_options=dict(tol=args.tol, gate_gain=20.0, gate_std=1.0, gate_cost=0.5))
        h = run.history
        fixed = evaluate(run.model, test, args.eval_tol, args.seed)
        own = evaluate(run.model, test, None, args.seed)
        rows.append({
            "model": label, "s/step": run.seconds_per_step,
            "s/epoch": run.seconds_per_step * len(train) / args.batch_size,
            "train NFE/step (late)": late_mean(h.nfe, 0.2),
            f"test NFE @{args.eval_tol:g}": fixed["nfe"], f"bits/dim @{args.eval_tol:g}": fixed["bpd"],
            f"cond bits/dim @{args.eval_tol:g}": fixed["cond_bpd"], f"error @{args.eval_tol:g}": fixed["error"],
            "test NFE own tol": own["nfe"], "bits/dim own tol": own["bpd"],
            **{f"params {k}": v for k, v in prior_parameter_counts(run.model).items()},
        })
    pd.set_option("display.width", 200)
    print(pd.DataFrame(rows).set_index("model").round(4).T.to_string())
    print(f"steps {args.steps}, batch {args.batch_size}, seed {args.seed}; load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
