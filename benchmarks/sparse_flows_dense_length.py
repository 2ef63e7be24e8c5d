"""How long, and in which regime, notebook 07's dense flow can train before the fixed-step solver is exploited.

Trains a dense flow on the notebook's data (500 points of gaussians_spiral, 2,000 validation points) with
backpropagation through a fixed-step solver, AdamW lr 3e-3, batch 500, one cosine schedule of ``--steps`` steps,
and prints, every ``--every`` steps, the training loss (through the training solver) beside the exact training
and validation NLL (dopri5 1e-5, exact trace). Where the training loss falls below the exact training NLL and the
validation NLL turns up, the field has started to exploit the solver's error: its training numbers are no longer
likelihoods.

Two uses:

* the length run: the notebook's field (ConcatSquash 3 x 64 tanh, rk4 with 8 steps) for 3,000 steps;
* ``--grid CSV``: the regime search behind the notebook's choice of field and solver, field widths 64 and 128 x
  solvers midpoint-4, rk4-4 and rk4-8 for ``--steps`` (600, the notebook's dense budget) each, every evaluation
  written to CSV (notebook 07 plots ``data/sparse_flows_regime_search.csv``; about 12 minutes on one thread).

    python benchmarks/sparse_flows_dense_length.py               # 3,000 steps: ~6 min on one thread
    python benchmarks/sparse_flows_dense_length.py --steps 1500 --seed 1
    python benchmarks/sparse_flows_dense_length.py --grid data/sparse_flows_regime_search.csv --steps 600 --every 100
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import pandas as pd
import torch

from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import cosine_schedule, fit
from cnflib.data import toy

GRID_WIDTHS = (64, 128)
GRID_SOLVERS = (("midpoint", 4), ("rk4", 4), ("rk4", 8))


def main(steps: int = 3_000, every: int = 500, seed: int = 0, threads: int = 1, width: int = 64,
         solver: str = "rk4", solver_steps: int = 8) -> pd.DataFrame:
    """Train one dense flow (3 layers of ``width``, ``solver`` with ``solver_steps``); its evaluations as a table."""
    torch.set_num_threads(threads)
    train, rest = toy.splits("gaussians_spiral", 500, 5_000, seed)  # the notebook's training and validation points
    val = rest[:2_000]
    mean, std = train.mean(0), train.std(0)
    train, val = (train - mean) / std, (val - mean) / std
    torch.manual_seed(seed)
    flow = CNF(ConcatSquashMLP(2, (width,) * 3, "tanh"), trace="exact", solver=solver, steps=solver_steps,
               sensitivity="autograd")

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with model.solver_options(solver="dopri5", atol=1e-5, rtol=1e-5):
            return {"train_nll": -model.log_prob(train).mean().item(), "val_nll": -model.log_prob(val).mean().item()}

    history = fit(flow, train, steps=steps, batch_size=500, lr=3e-3, optimizer="adamw", seed=seed,
                  lr_schedule=cosine_schedule(steps), evaluate=evaluate, eval_every=every, progress=False)
    table = history.dropna(subset=["eval_val_nll"])[["loss", "eval_train_nll", "eval_val_nll", "seconds"]].reset_index()
    print(f"3 x {width}, {solver} with {solver_steps} steps, seed {seed}, {steps} steps, torch threads {threads}")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), flush=True)
    return table


def grid(out: Path, steps: int, every: int, seed: int, threads: int) -> pd.DataFrame:
    """Every (width, solver) of the regime search at one budget; all evaluations in one CSV at ``out``."""
    tables = []
    for width, (solver, solver_steps) in itertools.product(GRID_WIDTHS, GRID_SOLVERS):
        table = main(steps, every, seed, threads, width, solver, solver_steps)
        tables.append(table.assign(width=width, solver=solver, solver_steps=solver_steps, seed=seed))
    result = pd.concat(tables, ignore_index=True)
    result.to_csv(out, index=False, float_format="%.5g")
    print(f"wrote {out}")
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3_000)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--grid", type=Path, default=None, metavar="CSV",
                        help="run the regime search (widths 64, 128 x midpoint-4, rk4-4, rk4-8) and write it to CSV")
    args = parser.parse_args()
    if args.grid is not None:
        grid(args.grid, args.steps, args.every, args.seed, args.threads)
    else:
        main(args.steps, args.every, args.seed, args.threads)
