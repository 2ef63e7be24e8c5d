"""Data-parallel :func:`cnflib.train.fit` that takes exactly the steps of a single process.

``fit``'s dataloader yields *step numbers* and each step draws its own minibatch. Lightning's plain
``strategy="ddp"`` shards that dataloader, i.e. it splits the **steps** between processes: with
2 processes each takes half of the steps, in a shuffled order, each on its own minibatch, so the
run makes ``steps / 2`` optimizer steps on batches twice as large, and rank 0's history holds only
its half of the steps.

Here every process takes every step and draws the same global minibatch (the same seed), and
:func:`sharded_loss` computes the loss on this process's equal share of it. DDP averages the
gradients over processes, so each step applies the gradient of the mean loss over the whole
batch, exactly as one process would (up to float rounding and randomness drawn inside the loss,
e.g. Hutchinson noise, which then differs per shard but keeps its expectation)::

    fit(model, data, steps=..., batch_size=1024, loss=sharded_loss(flow_loss()),
        accelerator="gpu", devices=4, strategy=ReplicatedStepsDDP())
"""
from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning.strategies import DDPStrategy
from pytorch_lightning.strategies.launchers.multiprocessing import _MultiProcessingLauncher
from torch import Tensor, nn
from torch.utils.data import DataLoader, DistributedSampler

from cnflib.train import Batch, LossFn


class _HistoryLauncher(_MultiProcessingLauncher):
    """Lightning's fork/spawn launcher, also carrying fit's history (rank 0's rows) back to the main process.

    Without it a notebook's ``fit`` under ``ddp_notebook`` returns trained weights but an empty history.
    """

    def get_extra_results(self, trainer) -> dict[str, Any]:
        module = trainer.lightning_module
        return {**super().get_extra_results(trainer), "cnflib_history": (list(module.rows), module.train_seconds)}

    def update_main_process_results(self, trainer, extra: dict[str, Any]) -> None:
        rows, seconds = extra.pop("cnflib_history")
        super().update_main_process_results(trainer, extra)
        trainer.lightning_module.rows[:] = rows
        trainer.lightning_module.train_seconds = seconds


class ReplicatedStepsDDP(DDPStrategy):
    """Lightning's :class:`DDPStrategy` in which every process iterates over all steps, in order.

    Takes ``DDPStrategy``'s arguments, e.g. ``process_group_backend="gloo"`` (CPU) or
    ``start_method="fork"`` (inside a notebook, like Lightning's ``ddp_notebook``; fit's history
    then comes back from rank 0).
    """

    def _configure_launcher(self) -> None:
        super()._configure_launcher()
        if isinstance(self._launcher, _MultiProcessingLauncher):
            self._launcher = _HistoryLauncher(self, start_method=self._start_method)

    def process_dataloader(self, dataloader: Any) -> Any:
        dataloader = super().process_dataloader(dataloader)
        if isinstance(dataloader, DataLoader) and isinstance(dataloader.sampler, DistributedSampler):
            return DataLoader(dataloader.dataset, batch_size=None, shuffle=False)
        return dataloader


def shard(batch: Batch, rank: int, world_size: int) -> Batch:
    """Rows ``[rank * n / W, (rank + 1) * n / W)`` of every tensor of ``batch`` ([n, ...] -> [n / W, ...]).

    Raises ValueError unless ``n`` is a multiple of ``W`` (unequal shards would weight rows unequally).
    """
    tensors = (batch,) if isinstance(batch, Tensor) else tuple(batch)
    n = len(tensors[0])
    if n % world_size:
        raise ValueError(f"the batch size {n} is not a multiple of the {world_size} processes")
    parts = tuple(t[rank * n // world_size:(rank + 1) * n // world_size] for t in tensors)
    return parts[0] if isinstance(batch, Tensor) else parts


def sharded_loss(loss: LossFn) -> LossFn:
    """``loss`` on this process's shard of the global batch; metrics (and ``loss``) averaged over processes.

    Without an initialized process group it is ``loss`` itself. Averaging the shards' means gives
    the global batch's mean because the shards have equal sizes. The averaged ``loss`` metric is
    what :func:`cnflib.train.fit` records in its history.
    """

    def wrapped(model: nn.Module, batch: Batch) -> tuple[Tensor, dict[str, float]]:
        if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
            return loss(model, batch)
        rank, world = dist.get_rank(), dist.get_world_size()
        value, metrics = loss(model, shard(batch, rank, world))
        names = list(metrics)
        totals = torch.tensor([value.item(), *(float(metrics[k]) for k in names)], dtype=torch.float64,
                              device=value.device)
        dist.all_reduce(totals)
        totals = (totals / world).tolist()
        return value, {"loss": totals[0], **dict(zip(names, totals[1:]))}

    return wrapped
