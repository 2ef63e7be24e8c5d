"""Flows by parts on Glow (8x8 digits): what an alternate step costs, and every schedule's bits/dim and time.

``--step-cost``: for each Glow size (steps per level x coupling width x batch), the median CPU time of an
end-to-end step and of an alternate step (2 parts, across blocks), and their ratio: the share of a step
that training one part at a time leaves. A small Glow's step is mostly fixed overhead (minibatch,
dequantization, the training loop, the optimizer), so the ratio stays near 1; the wider and deeper the
flow, the closer it gets to the compute saved (the idle part's backward pass).

Otherwise every schedule in one run: every run starts from the same Glow (same seed, ActNorm initialized on
the same batch) and sees the same minibatches. Prints the poster-style table (parts, bits/dim, wall and CPU
seconds of training), the CPU-time ratio to end-to-end and the CPU time each run takes to reach end-to-end's
final bits/dim + 0.01 (inf: never). The runs are single-threaded; report the load (printed) beside any figure.

    python benchmarks/flows_by_parts.py --step-cost                # ~1 min on 2 CPU cores
    python benchmarks/flows_by_parts.py                            # notebook 06's runs, ~4 min
    python benchmarks/flows_by_parts.py --seeds 0 1 2 --lr 3e-4
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from cnflib import parts
from cnflib.core.train import seed_everything
from cnflib.core.transforms import dequantize_centred
from cnflib.data import images
from cnflib.models.glow import glow

RUNS = {  # name: (schedule, parts); every split across blocks, as in the poster
    "end-to-end": ("end_to_end", 2),
    "sequential, 2 parts": ("sequential", 2),
    "alternate + FT, 2 parts": ("alternate_finetune", 2),
    "alternate + FT, 3 parts": ("alternate_finetune", 3),
}
SIZES = ((4, 32, 64), (8, 64, 128), (8, 128, 128), (16, 64, 128))  # (steps per level, hidden, batch)


def _flow(train, args, seed, flow_steps, hidden):
    seed_everything(seed)
    flow = glow(train.event_shape, blocks=args.blocks, steps=flow_steps, hidden=hidden, seed=seed)
    flow.data_init(dequantize_centred(train.x[torch.randperm(len(train))[:256]], train.levels))
    return flow


def step_cost(args, train, test) -> pd.DataFrame:
    rows = []
    for flow_steps, hidden, batch in SIZES:
        row = {"steps/level": flow_steps, "hidden": hidden, "batch": batch}
        for schedule in ("end_to_end", "alternate"):
            result = parts.train_schedule(
                _flow(train, args, 0, flow_steps, hidden), schedule, train.x, test, parts=2, steps=args.cost_steps,
                preprocess=lambda x: dequantize_centred(x, train.levels), eval_every=0, batch_size=batch,
                lr=args.lr, progress=False)
            cost = result.step_seconds("cpu_seconds")
            row[f"{schedule} ms/step"] = 1e3 * float(cost.mean())
        row["alternate / end-to-end"] = row["alternate ms/step"] / row["end_to_end ms/step"]
        rows.append(row)
    return pd.DataFrame(rows)


def schedules(args, train, test_split) -> pd.DataFrame:
    preprocess = lambda x: dequantize_centred(x, train.levels)  # noqa: E731
    tables = []
    for seed in args.seeds:
        test = dequantize_centred(test_split.x, train.levels, torch.Generator().manual_seed(seed + 1))
        results = {}
        for name in args.runs:
            schedule, k = RUNS[name]
            n_steps = args.alternate_steps if schedule == "alternate_finetune" else args.steps
            results[name] = parts.train_schedule(
                _flow(train, args, seed, args.flow_steps, args.hidden), schedule, train.x, test, parts=k,
                steps=n_steps, finetune_steps=args.finetune_steps, preprocess=preprocess, levels=train.levels,
                eval_every=args.eval_every, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)
        table = parts.schedule_table(results).assign(seed=seed)
        if "end-to-end" in results:
            table["cpu_vs_end_to_end"] = table.cpu_seconds / table.loc["end-to-end", "cpu_seconds"]
            target = results["end-to-end"].final["bpd"] + 0.01
            table["cpu_s_to_target"] = [parts.time_to_target(results[n.replace(" (before fine-tuning)", "")], target)
                                        for n in table.index]
        tables.append(table)
    return pd.concat(tables).drop(columns="minutes")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--step-cost", action="store_true", help="only measure the step costs of the Glow sizes")
    p.add_argument("--cost-steps", type=int, default=40, help="steps per run of --step-cost")
    p.add_argument("--steps", type=int, default=600, help="end-to-end and sequential steps")
    p.add_argument("--alternate-steps", type=int, default=400, help="alternate steps before fine-tuning (poster: 2/3)")
    p.add_argument("--finetune-steps", type=int, default=200, help="end-to-end fine-tuning steps (poster: 1/3)")
    p.add_argument("--eval-every", type=int, default=25)
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--flow-steps", type=int, default=8)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    args = p.parse_args()
    torch.set_num_threads(1)
    train, test_split = images.digits("train"), images.digits("test")
    print(f"{vars(args)}\nload average before: {os.getloadavg()}")
    if args.step_cost:
        test = dequantize_centred(test_split.x[:50], train.levels, torch.Generator().manual_seed(1))
        table = step_cost(args, train, test)
    else:
        table = schedules(args, train, test_split)
    print(f"load average after: {os.getloadavg()}")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
