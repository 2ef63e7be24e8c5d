"""Flows by parts in one process vs one process per part (gloo on 127.0.0.1): wall time and throughput.

Both runs train the same parts with the same round-robin schedule and must give the same losses
(``max |loss diff|``); the K-process run overlaps part k's step s with part k-1's step s+1.
Each process uses one thread (``torch.set_num_threads(1)``), so a K-process run can use K cores.

    python benchmarks/parts_distributed.py                     # ~1 min on 2 idle CPU cores
    python benchmarks/parts_distributed.py --model cnf --steps 100
"""
from __future__ import annotations

import argparse
import os
from dataclasses import asdict

import pandas as pd
import torch

from cnflib.parts.distributed import PipelineConfig, run_local


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(PipelineConfig(steps=200)).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    config = PipelineConfig(**vars(p.parse_args()))
    torch.set_num_threads(1)
    runs = {1: run_local(config, 1), config.parts: run_local(config, config.parts)}
    reference = torch.tensor([r["loss"] for r in runs[1]["rows"]])
    rows = []
    for procs, run in runs.items():
        losses = torch.tensor([r["loss"] for r in run["rows"]])
        rows.append({"processes": procs, "wall_s": run["wall"], "steps_per_s": config.steps / run["wall"],
                     "samples_per_s": config.steps * config.batch_size / run["wall"],
                     "final_loss": losses[-config.parts:].mean().item(),
                     "max_abs_loss_diff": (losses - reference).abs().max().item()})
    table = pd.DataFrame(rows).set_index("processes")
    table["speedup"] = table.wall_s.iloc[0] / table.wall_s
    print(f"{config}\nload average: {os.getloadavg()}")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
