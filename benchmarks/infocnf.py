"""InfoCNF on 8x8 digits, notebook 04's tutorial arms in one run: InfoCNF at fixed tolerances
(1e-6, 1e-5, 1e-4), InfoCNF with learned tolerances (main arm: range [1e-6, 1e-4], NFE weight
``--eta``; paper arm: range [1e-5, 1e-4], eta 0.1) and CCNF at 1e-5, then CCNF vs InfoCNF on
jittered digits (``cnflib.data.images.jittered``).

Prints a Table-1-like table per task: error, bits/dim (exact trace, own tolerance), training NFE
per step (last 20% of steps), NFE of the held-out pass, parameters of the label machinery and the gates, seconds per
epoch. The held-out columns are named after ``--split``; selection runs pass ``--split validation``.

    OMP_NUM_THREADS=1 python benchmarks/infocnf.py [--steps 60] [--seed 0] [--eta 2] [--split test]

Timings are only comparable on an otherwise idle machine: the load is printed with the table.
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from cnflib.core.train import late_mean
from cnflib.data.images import digits, jittered
from cnflib.infocnf import evaluate_infocnf, prior_parameter_counts, train_image_flow
from cnflib.models.image_flow import ImageRun


def row(run: ImageRun, score: dict[str, float], n_train: int, batch_size: int, split: str) -> dict[str, float]:
    """One table row; the held-out columns are named after ``split`` ("validation" or "test")."""
    counts = prior_parameter_counts(run.model)
    return {f"{split} error (%)": 100 * score.get("error", float("nan")), f"{split} bits/dim": score["bpd"],
            "train NFE/step": late_mean(run.history.nfe, 0.2), f"{split} NFE": score["nfe"],
            "label params": counts["prior_and_classifier"], "gate params": counts["gates"],
            "s/epoch": run.seconds_per_step * n_train / batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--eta", type=float, default=2.0, help="NFE weight of the main learned arm")
    parser.add_argument("--gate-lr", type=float, default=0.05)
    parser.add_argument("--supervised-fraction", type=float, default=0.5)
    parser.add_argument("--split", default="test", choices=("validation", "test"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train, held_out = digits("train"), digits(args.split)
    common = dict(hidden=(16, 16), gate_lr=args.gate_lr, gate_std=0.5, supervised_fraction=args.supervised_fraction)
    budget = dict(steps=args.steps, batch_size=args.batch_size, lr=3e-3, seed=args.seed)
    arms = {f"InfoCNF fixed {tol:.0e}": ("infocnf", False, dict(tol=tol)) for tol in (1e-6, 1e-5, 1e-4)}
    arms["InfoCNF learned"] = ("infocnf", True, dict(tol=1e-5, gate_range=(1e-6, 1e-4), eta=args.eta))
    arms["InfoCNF learned, paper"] = ("infocnf", True, dict(tol=1e-5, gate_range=(1e-5, 1e-4), eta=0.1))
    arms["CCNF"] = ("ccnf", False, dict(tol=1e-5))
    tables = {}
    rows = {}
    for label, (kind, gated, options) in arms.items():
        run = train_image_flow(label, kind, train, gated=gated, model_options={**common, **options}, **budget)
        score = evaluate_infocnf(run.model, held_out, None, args.seed)
        rows[label] = row(run, score, len(train), args.batch_size, args.split)
    tables["digits"] = pd.DataFrame(rows).T
    hard_train = jittered(train, invert=0.5, max_shift=1, seed=args.seed)
    hard_held_out = jittered(held_out, invert=0.5, max_shift=1, seed=args.seed + 1000)
    rows = {}
    for label, kind in (("CCNF", "ccnf"), ("InfoCNF", "infocnf")):
        run = train_image_flow(label, kind, hard_train, model_options={**common, "tol": 1e-5}, **budget)
        score = evaluate_infocnf(run.model, hard_held_out, None, args.seed)
        rows[label] = row(run, score, len(train), args.batch_size, args.split)
    tables["jittered digits"] = pd.DataFrame(rows).T
    pd.set_option("display.width", 200)
    print(pd.concat(tables).round(3).to_string())
    print(f"{args.split} split, steps {args.steps}, batch {args.batch_size}, eta {args.eta}, seed {args.seed}; "
          f"load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
