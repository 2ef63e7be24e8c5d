"""CPU time per training iteration: flow matching (I-CFM, OT-CFM) vs maximum likelihood (FFJORD, RNODE).

Every run trains the same ``CNF(ConcatSquashMLP)`` on the same data and seed (``cnflib.rnode.train_flow`` and
``cnflib.flowmatching.train_matching``); the maximum-likelihood runs solve with dopri5 + adjoint at ``--tol``
and the exact trace. Prints CPU milliseconds per iteration (``fit``'s ``cpu_seconds``, evaluation excluded),
training NFE per iteration, and the ratio to FFJORD. Run on an idle machine with one thread
(``OMP_NUM_THREADS=1``) for figures that mean something.

    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py                      # ~1 min on an idle core
    OMP_NUM_THREADS=1 python benchmarks/flow_matching.py --hidden 64 64 64 --batch-size 256
"""
from __future__ import annotations

import argparse

import pandas as pd
import torch

from cnflib.data.vectors import vector_splits
from cnflib.flowmatching import train_matching
from cnflib.rnode import train_flow


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="8gaussians")
    p.add_argument("--ml-steps", type=int, default=30, help="maximum-likelihood iterations timed")
    p.add_argument("--fm-steps", type=int, default=300, help="flow-matching iterations timed")
    p.add_argument("--hidden", type=int, nargs="+", default=[32, 32, 32])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.set_num_threads(1)
    common = dict(hidden=tuple(args.hidden), batch_size=args.batch_size, tol=args.tol, seed=args.seed, lr=3e-3)
    x_train, _ = vector_splits(args.dataset, 20_000, 100, args.seed)
    histories = {
        "FFJORD": train_flow(args.dataset, steps=args.ml_steps, n_test=100, **common).history,
        "RNODE": train_flow(args.dataset, steps=args.ml_steps, kinetic=0.3, jacobian=0.3, n_test=100, **common).history,
        "I-CFM": train_matching(x_train, coupling="independent", steps=args.fm_steps, **common)[1],
        "OT-CFM": train_matching(x_train, coupling="ot", steps=args.fm_steps, **common)[1],
    }
    rows = {name: {"iterations": len(h), "cpu_ms_per_iter": 1e3 * h.cpu_seconds.iloc[-1] / len(h),
                   "wall_ms_per_iter": 1e3 * h.seconds.iloc[-1] / len(h),
                   "nfe_per_iter": (h.nfe_forward.sum() + h.nfe_backward.sum()) / len(h)}
            for name, h in histories.items()}
    table = pd.DataFrame(rows).T
    table["cpu_vs_ffjord"] = table.cpu_ms_per_iter / table.loc["FFJORD", "cpu_ms_per_iter"]
    print(f"{args.dataset}, hidden {args.hidden}, batch {args.batch_size}, dopri5 {args.tol:g} (maximum likelihood)")
    print(table.round(4).to_string())


if __name__ == "__main__":
    main()
