"""Flows trained by parts in separate processes (torch.distributed: gloo on CPU, NCCL on GPU).

The single-process ``alternate`` schedule of :mod:`cnflib.parts` trains part ``k = (s // period) mod K``
at step s, on the detached output of parts ``< k``. Here process k holds only part k: for a step
that trains a later part it runs its part without gradient and sends the activations (and the
summed log-det) forward; for its own steps it trains; it never sends anything backward. Process k
can train on step s while process k-1 already works on step s+1, so the parts overlap in time,
and the losses are those of the single-process schedule (same minibatches, noise and updates).

    torchrun --nproc-per-node 2 -m cnflib.parts.distributed --parts 2 --steps 200
    python -m cnflib.parts.distributed --parts 2 --steps 200       # one process, all parts

The explicit loop below (not :func:`cnflib.core.train.fit`) is needed because each step is a
point-to-point exchange between processes, which Lightning's data-parallel strategies do not do.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import tempfile
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor

from cnflib.core._validation import check_choice
from cnflib.core.flow import FlowOutput
from cnflib.core.train import draw_batch, step_seed
from cnflib.core.transforms import dequantize_centred
from cnflib.models.glow import FlowSequence, glow
from cnflib.parts.schedules import Bounds, part_bounds

MODELS: tuple[str, ...] = ("glow", "cnf")


@dataclass
class PipelineConfig:
    """What to train: ``glow`` on the 8x8 digits or ``cnf`` (stacked CNF blocks, rk4) on pinwheel.

    ``threads`` is torch's intra-op thread count inside :func:`pipeline_train`, in every process
    alike: the reductions of a matrix product depend on it, so a one-process run and a multi-process
    run only take bit-identical steps when they use the same count, whatever the caller's setting.
    """

    model: str = "glow"
    parts: int = 2
    split: str = "across_blocks"
    steps: int = 100
    period: int = 1
    batch_size: int = 64
    lr: float = 1e-3
    seed: int = 0
    blocks: int = 2
    flow_steps: int = 4
    hidden: int = 32
    threads: int = 1

    def __post_init__(self) -> None:
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")

    def build(self) -> tuple[FlowSequence, Tensor, Callable[[Tensor], Tensor], Bounds]:
        """(flow with its ActNorms initialized, training data [N, ...], per-batch preprocessing, part bounds).
        Deterministic in ``seed``: every process builds the same flow."""
        check_choice("model", self.model, MODELS)
        torch.manual_seed(self.seed)
        if self.model == "glow":
            from cnflib.data import images

            train = images.digits("train")
            data = train.x
            flow = glow(train.event_shape, blocks=self.blocks, steps=self.flow_steps, hidden=self.hidden, seed=self.seed)
            preprocess: Callable[[Tensor], Tensor] = partial(dequantize_centred, levels=train.levels)
        else:
            from cnflib.data import toy
            from cnflib.models.stacked_cnf import stacked_cnf

            data = toy.splits("pinwheel", 2000, 10, seed=self.seed)[0]
            flow = stacked_cnf(2, self.blocks, (self.hidden,) * 2, solver="rk4", steps=4, sensitivity="autograd", T=0.5)
            preprocess = lambda x: x  # noqa: E731
        flow.data_init(preprocess(data[:256]))
        return flow, data, preprocess, part_bounds(flow, self.parts, self.split)


def pipeline_train(config: PipelineConfig, rank: int = 0, world_size: int = 1,
                   device: Optional[torch.device] = None) -> list[dict[str, float]]:
    """Train the parts this process owns (all of them if ``world_size == 1``, else part ``rank``).

    Needs an initialized process group when ``world_size > 1`` (``world_size`` must equal ``parts``).
    Returns one row per training step of the owned parts: step, part, loss (the truncated NLL, nats),
    seconds (wall time since the start of the loop).
    """
    if world_size not in (1, config.parts):
        raise ValueError(f"world_size must be 1 or parts={config.parts}, got {world_size}")
    device = device or torch.device("cpu")
    with _intra_op_threads(config.threads):
        return _pipeline_train(config, rank, world_size, device)


@contextmanager
def _intra_op_threads(n: int) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)``, then restore the caller's count."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _pipeline_train(config: PipelineConfig, rank: int, world_size: int, device: torch.device) -> list[dict[str, float]]:
    flow, data, preprocess, bounds = config.build()
    flow.to(device)
    own = list(range(config.parts)) if world_size == 1 else [rank]
    params = {k: [p for layer in flow.layers[a:b] for p in layer.parameters()] for k, (a, b) in enumerate(bounds)}
    optimizers = {k: torch.optim.Adam(params[k], lr=config.lr) for k in own if params[k]}
    dim = data[0].numel()
    rows, pending = [], []
    start = time.perf_counter()
    for step in range(config.steps):
        k = (step // config.period) % config.parts
        if own[0] > k:
            continue  # a later part is not run on this step
        if own[0] == 0:
            torch.manual_seed(step_seed(config.seed, step))  # as cnflib.core.train.fit does
            batch = draw_batch((data,), config.batch_size, config.seed, step)
            h = preprocess(batch).reshape(config.batch_size, -1).to(device)
            prefix = h.new_zeros(config.batch_size)
        else:
            buffer = torch.empty(config.batch_size, dim + 1, device=device)
            dist.recv(buffer, src=rank - 1)
            h, prefix = buffer[:, :dim], buffer[:, dim]
        for j in own:
            if j < k:
                with torch.no_grad():
                    out = flow.run(h, *bounds[j])
                    h, prefix = out.z, prefix + out.delta_logp
                if j + 1 not in own:
                    pending.append(dist.isend(torch.cat([h, prefix[:, None]], 1).contiguous(), dst=rank + 1))
            elif j == k:
                loss = -FlowOutput(h, prefix).then(flow.run(h, *bounds[j])).log_prob(flow.base).mean()
                optimizers[j].zero_grad()
                loss.backward()
                optimizers[j].step()
                rows.append({"step": step + 1, "part": j, "loss": loss.item(), "seconds": time.perf_counter() - start})
    for work in pending:
        work.wait()
    return rows


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world_size: int, port: int, config: PipelineConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        _run_and_gather(config, rank, world_size, torch.device("cpu"), out)
    finally:
        dist.destroy_process_group()


def _run_and_gather(config: PipelineConfig, rank: int, world_size: int, device: torch.device, out: str) -> None:
    dist.barrier()
    start = time.perf_counter()
    rows = pipeline_train(config, rank, world_size, device)
    dist.barrier()
    wall = time.perf_counter() - start
    gathered: list = [None] * world_size if rank == 0 else []
    dist.gather_object(rows, gathered if rank == 0 else None, dst=0)
    if rank == 0:
        merged = sorted((r for part in gathered for r in part), key=lambda r: r["step"])
        Path(out).write_text(json.dumps({"config": asdict(config), "world_size": world_size, "wall": wall, "rows": merged}))


def run_local(config: PipelineConfig, world_size: int) -> dict:
    """Run :func:`pipeline_train` on this machine in ``world_size`` gloo processes on 127.0.0.1
    (``1``: in this process, no communication). Returns ``{"wall": seconds, "rows": [...], ...}``;
    ``wall`` includes building the flow in each process but not starting the processes."""
    if world_size == 1:
        start = time.perf_counter()
        rows = pipeline_train(config)
        return {"config": asdict(config), "world_size": 1, "wall": time.perf_counter() - start, "rows": rows}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "result.json")
        mp.spawn(_worker, args=(world_size, _free_port(), config, out), nprocs=world_size, join=True)
        return json.loads(Path(out).read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, value in asdict(PipelineConfig()).items():
        p.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    p.add_argument("--out", default="parts_distributed.json", help="where rank 0 writes the losses and wall time")
    args = vars(p.parse_args())
    out = args.pop("out")
    config = PipelineConfig(**args)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        Path(out).write_text(json.dumps(run_local(config, 1)))
        print(f"wrote {out}")
    else:
        cuda = torch.cuda.is_available()
        rank = int(os.environ["RANK"])
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if cuda else "gloo")
        try:
            _run_and_gather(config, rank, world_size, device, out)
        finally:
            dist.destroy_process_group()
        if rank == 0:
            print(f"wrote {out}")


if __name__ == "__main__":
    main()
