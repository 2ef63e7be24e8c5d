"""Flows by parts on Glow (8x8 digits): test bits/dim and training wall time of every schedule, in one run.

Every run starts from the same Glow (same seed, ActNorm initialized on the same batch) and sees the
same minibatches. Prints the poster-style table (parts, bits/dim, wall and CPU seconds of training) and the
CPU-time ratio to end-to-end (wall time on a shared machine depends on the other jobs; the runs are single-threaded).

    python benchmarks/flows_by_parts.py                          # ~1.5 min on 2 CPU cores
    python benchmarks/flows_by_parts.py --steps 1500 --alternate-steps 1000 --finetune-steps 500 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from cnflib import parts
from cnflib.core.transforms import dequantize
from cnflib.data import images
from cnflib.models.glow import glow
from cnflib.core.train import seed_everything

RUNS = {  # name: (schedule, parts, split)
    "end-to-end": ("end_to_end", 2, "across_blocks"),
    "sequential, 2 parts": ("sequential", 2, "across_blocks"),
    "alternate + FT, 2 parts": ("alternate_finetune", 2, "across_blocks"),
    "alternate + FT, 3 parts": ("alternate_finetune", 3, "by_blocks"),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600, help="end-to-end and sequential steps")
    p.add_argument("--alternate-steps", type=int, default=400, help="alternate steps before fine-tuning (poster: 2/3)")
    p.add_argument("--finetune-steps", type=int, default=200, help="end-to-end fine-tuning steps (poster: 1/3)")
    p.add_argument("--blocks", type=int, default=3)
    p.add_argument("--flow-steps", type=int, default=4)
    p.add_argument("--hidden", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    args = p.parse_args()
    torch.set_num_threads(1)
    train, test_split = images.digits("train"), images.digits("test")
    preprocess = lambda x: dequantize(x, train.levels) - 0.5  # noqa: E731
    tables = []
    for seed in args.seeds:
        test = dequantize(test_split.x, train.levels, torch.Generator().manual_seed(seed + 1)) - 0.5
        results = {}
        for name in args.runs:
            schedule, k, split = RUNS[name]
            seed_everything(seed)
            flow = glow(train.event_shape, blocks=args.blocks, steps=args.flow_steps, hidden=args.hidden, seed=seed)
            flow.data_init(preprocess(train.x[torch.randperm(len(train))[:256]]))
            n_steps = args.alternate_steps if schedule == "alternate_finetune" else args.steps
            results[name] = parts.train_schedule(
                flow, schedule, train.x, test, parts=k, split=split, steps=n_steps,
                finetune_steps=args.finetune_steps, preprocess=preprocess, levels=train.levels,
                eval_every=args.steps, batch_size=args.batch_size, lr=args.lr, seed=seed, progress=False)
        table = parts.schedule_table(results).assign(seed=seed)
        if "end-to-end" in results:
            table["cpu_vs_end_to_end"] = table.cpu_seconds / table.loc["end-to-end", "cpu_seconds"]
        tables.append(table)
    print(f"{vars(args)}\nload average: {os.getloadavg()}")
    print(pd.concat(tables).drop(columns="minutes").to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
