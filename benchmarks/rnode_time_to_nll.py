"""Time-to-NLL: wall seconds and NFE for vanilla FFJORD and RNODE to reach a target test NLL.

Both runs use the same data, seed, network, solver and budget (``cnflib.rnode.train_flow``);
the test NLL (dopri5 at ``--eval-tol``) is measured every ``--eval-every`` steps. The target is
``--target`` or, by default, the worse of the two runs' best NLL plus ``--slack`` nats (so both reach
it before their last evaluation). Prints one
table with the ratio RNODE / vanilla.

    python benchmarks/rnode_time_to_nll.py                       # ~2 min on 2 idle CPU cores
    python benchmarks/rnode_time_to_nll.py --dataset checkerboard --steps 1000 --kinetic 1 --jacobian 1
"""
from __future__ import annotations

import argparse
import math

import pandas as pd
import torch

from cnflib.rnode import FlowRun, train_flow


def reach(run: FlowRun, target: float) -> dict[str, float]:
    """Steps, cumulative wall seconds and training NFE at the first evaluation with NLL <= target."""
    h = run.history
    evals = h.eval_nll.dropna()
    hit = evals[evals <= target]
    if hit.empty:
        return {"best_nll": evals.min(), "steps": math.nan, "seconds": math.nan, "nfe_forward": math.nan,
                "nfe_total": math.nan}
    step = hit.index[0]
    upto = h.loc[:step]
    return {"best_nll": evals.min(), "steps": step, "seconds": upto.seconds.iloc[-1],
            "nfe_forward": upto.nfe_forward.sum(), "nfe_total": upto.nfe_forward.sum() + upto.nfe_backward.sum()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="pinwheel")
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--kinetic", type=float, default=0.3)
    p.add_argument("--jacobian", type=float, default=0.3)
    p.add_argument("--T", type=float, default=1.0)
    p.add_argument("--tol", type=float, default=1e-5)
    p.add_argument("--eval-tol", type=float, default=1e-5)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--target", type=float, default=None)
    p.add_argument("--slack", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)

    common = dict(steps=a.steps, T=a.T, tol=a.tol, eval_tol=a.eval_tol, lr=a.lr, batch_size=a.batch_size,
                  seed=a.seed, eval_every=a.eval_every, n_test=1000)
    runs = [train_flow(a.dataset, **common),
            train_flow(a.dataset, kinetic=a.kinetic, jacobian=a.jacobian, **common)]
    target = a.target if a.target is not None else max(r.history.eval_nll.min() for r in runs) + a.slack
    table = pd.DataFrame({r.label: reach(r, target) for r in runs}).T
    table["s_per_iter"] = [r.history.seconds.iloc[-1] / len(r.history) for r in runs]
    ratio = table.iloc[1] / table.iloc[0]
    ratio["best_nll"] = table.best_nll.iloc[1] - table.best_nll.iloc[0]
    table.loc["RNODE / vanilla (best_nll: difference)"] = ratio
    print(f"{a.dataset}, {a.steps} steps, T={a.T}, train tol {a.tol:g}, eval tol {a.eval_tol:g}, "
          f"seed {a.seed}, {a.threads} thread(s); target test NLL {target:.3f} nats")
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 140):
        print(table.to_string())


if __name__ == "__main__":
    main()
