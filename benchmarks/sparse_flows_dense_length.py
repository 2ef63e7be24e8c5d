"""How long notebook 07's dense flow can train before the fixed-step solver is exploited.

Trains the notebook's dense flow (500 points of gaussians_spiral, ConcatSquash 3 x 64 tanh, rk4 with 8 steps
and backpropagation through it, AdamW lr 3e-3, batch 500) for one cosine schedule of ``--steps`` steps, and
prints, every ``--every`` steps, the training loss (through rk4) beside the exact training and validation NLL
(dopri5 1e-5, exact trace). Where the validation NLL turns up while the training loss keeps falling below the
exact training NLL, the field has started to exploit the solver's error.

    python benchmarks/sparse_flows_dense_length.py               # 3,000 steps: ~6 min on one thread
    python benchmarks/sparse_flows_dense_length.py --steps 1500 --seed 1
"""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import cosine_schedule, fit
from cnflib.data import toy


def main(steps: int = 3_000, every: int = 500, seed: int = 0, threads: int = 1) -> pd.DataFrame:
    torch.set_num_threads(threads)
    train, rest = toy.splits("gaussians_spiral", 500, 5_000, seed)  # the notebook's training and validation points
    val = rest[:2_000]
    mean, std = train.mean(0), train.std(0)
    train, val = (train - mean) / std, (val - mean) / std
    torch.manual_seed(seed)
    flow = CNF(ConcatSquashMLP(2, (64, 64, 64), "tanh"), trace="exact", solver="rk4", steps=8, sensitivity="autograd")

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with model.solver_options(solver="dopri5", atol=1e-5, rtol=1e-5):
            return {"train_nll": -model.log_prob(train).mean().item(), "val_nll": -model.log_prob(val).mean().item()}

    history = fit(flow, train, steps=steps, batch_size=500, lr=3e-3, optimizer="adamw", seed=seed,
                  lr_schedule=cosine_schedule(steps), evaluate=evaluate, eval_every=every, progress=False)
    table = history.dropna(subset=["eval_val_nll"])[["loss", "eval_train_nll", "eval_val_nll", "seconds"]]
    print(f"seed {seed}, {steps} steps, torch threads {threads}")
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(args.steps, args.every, args.seed, args.threads)
