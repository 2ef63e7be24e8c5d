"""A short cnflib.core.train.fit run, single-process or data parallel on CPU processes (gloo); used by test_ddp.py.

    python tests/ddp_fit.py OUT.json --processes 2

Lightning's ``ddp`` re-launches this script for ranks > 0; rank 0 writes the loss history and
the final parameters to OUT.json.
"""
import argparse
import json
import os
import warnings

import torch

from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import fit


def run(processes: int, strategy: str = "ddp", checkpoint=None) -> dict:
    """Train a small CNF (exact trace: no noise, so the comparison is exact) for 6 steps of batch 64.

    ``strategy``: "ddp" (re-runs this script) or "ddp_notebook" (forks, as in a notebook);
    ``checkpoint``: a file, written every 2 steps.
    """
    torch.manual_seed(0)
    data = torch.randn(512, 2) * torch.tensor([1.0, 0.5]) + 1.0
    model = CNF(ConcatSquashMLP(2, hidden=(16, 16)), trace="exact", solver="rk4", steps=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history = fit(model, data, steps=6, batch_size=64, lr=1e-2, seed=1, progress=False, accelerator="cpu",
                      devices=processes, strategy=strategy if processes > 1 else "auto",
                      checkpoint=checkpoint, checkpoint_every=2)
    return {"steps": history.index.tolist(), "loss": history["loss"].tolist(),
            "params": torch.cat([p.detach().flatten() for p in model.parameters()]).tolist()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = run(args.processes)
    if int(os.environ.get("LOCAL_RANK", 0)) == 0:
        with open(args.out, "w") as f:
            json.dump(result, f)
