"""Prune–retrain sweep at tutorial scale: parameters, test NLL and seconds per iteration per prune ratio.

Trains one dense CNF (ConcatSquash 64-64 tanh, midpoint 4 steps, backprop through the solver,
exact trace, batch 512), then runs the iterative schedule of Sparse Flows for both criteria from
that dense flow, and prints, per criterion and ratio: remaining parameters, test NLL (dopri5
1e-5), its NFE, training seconds per iteration, and the wall time of each full sweep.

    python benchmarks/pruning_sweep.py                 # ~1.5 min on 2 cores
    python benchmarks/pruning_sweep.py --steps 300 --ratios 0.5,0.8,0.9,0.95
"""
from __future__ import annotations

import argparse
import time

import pandas as pd
import torch

from cnflib.data import toy
from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import cosine_schedule
from cnflib.sparse.pruning import prune_retrain


def main(dataset: str = "gaussians_spiral", steps: int = 100, ratios: tuple[float, ...] = (0.5, 0.8, 0.9),
         seed: int = 0, threads: int = 1) -> pd.DataFrame:
    torch.set_num_threads(threads)
    train, test = toy.splits(dataset, 5_000, 2_000, seed)
    mean, std = train.mean(0), train.std(0)
    train, test = (train - mean) / std, (test - mean) / std
    torch.manual_seed(seed)
    flow = CNF(ConcatSquashMLP(2, (64, 64), "tanh"), trace="exact", solver="midpoint", steps=4, sensitivity="autograd")

    def evaluate(model: torch.nn.Module) -> dict[str, float]:
        with model.solver_options(solver="dopri5", atol=1e-5, rtol=1e-5):
            return {"nll": -model.log_prob(test).mean().item(), "nfe": model.nfe_forward}

    kwargs = dict(train_steps=steps, evaluate=evaluate, batch_size=512, lr=2e-2, weight_decay=1e-4,
                  optimizer="adamw", seed=seed, lr_schedule=cosine_schedule(steps))
    tables, sweep_seconds = [], {}
    dense = None
    for method in ("unstructured", "structured"):
        start = time.perf_counter()
        sweep = prune_retrain(flow if dense is None else None, train, ratios, method=method, dense=dense, **kwargs)
        sweep_seconds[method] = time.perf_counter() - start
        dense = sweep.models[0.0]
        tables.append(sweep.table.assign(method=method))
    table = pd.concat(tables).reset_index().set_index(["method", "ratio"])
    columns = ["params", "measured_ratio", "nll", "nfe", "s_per_iter", "train_seconds"]
    print(f"{dataset}, {steps} steps per stage, torch threads {threads}")
    print(table[columns].to_string(float_format=lambda v: f"{v:.4f}"))
    for method, seconds in sweep_seconds.items():
        extra = " (includes the dense training)" if method == "unstructured" else " (from the shared dense flow)"
        print(f"full {method} sweep: {seconds:.1f} s{extra}")
    return table


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="gaussians_spiral")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--ratios", default="0.5,0.8,0.9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    main(args.dataset, args.steps, tuple(float(r) for r in args.ratios.split(",")), args.seed, args.threads)
