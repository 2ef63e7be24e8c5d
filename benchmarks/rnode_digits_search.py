"""Search for RNODE's saving on the 8x8 digits (notebook 03, issue 15): λ x training length x RK4 step.

Around notebook 03's digits setting (``cnflib.rnode.train_image_flow``: multiscale CNF, 2 scales, one
block per scale, 16-channel nets, Hutchinson trace, batch 64, lr 3e-3 with the notebook's cosine decay to 0.1
(``cnflib.core.train.cosine_schedule``); the stored CSV has seeds 0 and 1), every (training length, RK4 step) cell trains one vanilla RK4 arm and one RNODE RK4 arm per
λ (λ_K = λ_J = λ) with the same seed, data stream and schedule. Each run is scored like the notebook:
validation bits/dim and evaluation NFE (dopri5 at 1e-5, all validation images) every ``steps / 4``
steps, test bits/dim and NFE at the end (``summarize_images``), training NFE and CPU seconds; the cost
to a common target per cell (``cost_to_reach`` on validation; target: the notebook's rule, the worst best
validation bits/dim among the cell's arms within 0.05 of the best, + 0.02). Writes a CSV the notebook
plots (one row per run; a partial search survives, the CSV is written after every cell; a run at
another ``--seed`` adds that seed's rows).

    OMP_NUM_THREADS=1 python benchmarks/rnode_digits_search.py [--out data/rnode_digits_search.csv] [--seed 0] [--start 0]

Sized for ~10 minutes per seed on one thread (4 runs per cell, 20 runs; seed 0 measured 506 s at load ~0.7): λ in {0.01, 0.1, 1}; lengths 40 and
160 steps at RK4 steps 0.25 and 0.5, and 640 steps at step 0.5 only (cut: 640 steps at step 0.25, about
8 more minutes; the two step sizes gave the same bits/dim and evaluation NFE to 0.001 at 40 and 160).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from cnflib.core.train import cosine_schedule
from cnflib.rnode import cost_to_reach, summarize_images, train_image_flow

LAMBDAS = (0.01, 0.1, 1.0)
CELLS = [(40, 0.25), (40, 0.5), (160, 0.25), (160, 0.5), (640, 0.5)]  # (training steps, RK4 step size)
IMAGE = dict(scales=2, blocks_per_scale=1, hidden=(16, 16), batch_size=64, lr=3e-3, tol=1e-5, eval_tol=1e-5,
             n_test=None, n_val=None)  # notebook 03's tutorial digits preset


def run_cell(steps: int, step_size: float, seed: int, lambdas: tuple[float, ...] = LAMBDAS) -> list[dict]:
    """Vanilla RK4 and RNODE RK4 at each λ for one (length, step) cell; one row per run."""
    runs = [train_image_flow("digits", kinetic=lam, jacobian=lam, steps=steps, solver="rk4", step_size=step_size,
                             seed=seed, eval_every=max(steps // 4, 1), lr_schedule=cosine_schedule(steps, 0.1),
                             label=f"λ={lam:g}", **IMAGE)
            for lam in (0.0, *lambdas)]
    final = summarize_images(runs)
    bests = [r.history.eval_bpd.min() for r in runs]
    target = max(b for b in bests if b <= min(bests) + 0.05) + 0.02
    rows = []
    for lam, run in zip((0.0, *lambdas), runs):
        evals = run.history[["eval_bpd", "eval_nfe"]].dropna()
        reach = cost_to_reach(run.history, target, "eval_bpd")
        f = final.loc[run.label]
        rows.append({"steps": steps, "step_size": step_size, "lambda": lam, "seed": seed,
                     "val_bpd": float(evals.eval_bpd.iloc[-1]), "val_eval_nfe": float(evals.eval_nfe.iloc[-1]),
                     "test_bpd": f.test_bpd, "test_eval_nfe": f.eval_nfe, "solver_gap": f.solver_gap,
                     "train_nfe": f.nfe_total, "train_cpu_s": f.cpu_seconds, "target_bpd": target,
                     "nfe_to_target": reach["nfe_total"], "cpu_s_to_target": reach["cpu_seconds"],
                     "steps_to_target": reach["steps"]})
    return rows


def main(out: str = "data/rnode_digits_search.csv", seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Run ``CELLS[start:]`` at ``seed``. The rows of other seeds already in ``out`` are kept, and so, with
    ``start > 0``, are this seed's rows of the first ``start`` cells; the rest of this seed's are replaced."""
    torch.set_num_threads(1)
    rows: list[dict] = []
    if Path(out).exists():
        old = pd.read_csv(out)
        done = old.seed == seed
        if start:
            first = pd.Series(list(zip(old.steps, old.step_size)), index=old.index).isin(CELLS[:start])
            done &= ~first
        rows = old[~done].to_dict("records")
    for steps, step_size in CELLS[start:]:
        begin = time.perf_counter()
        rows += run_cell(steps, step_size, seed)
        frame = pd.DataFrame(rows)
        print(frame.tail(len(LAMBDAS) + 1).round(4).to_string(index=False),
              f"\n({time.perf_counter() - begin:.0f} s)", flush=True)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, float_format="%.5g")  # after every cell: a partial search survives
    return frame


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/rnode_digits_search.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="skip the first cells; append to --out")
    args = parser.parse_args()
    main(args.out, args.seed, args.start)
