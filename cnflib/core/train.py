"""Training on PyTorch Lightning: one loop for every model in the collection.

:func:`fit` trains any ``nn.Module`` on minibatches drawn from in-memory tensors with a loss
function ``loss(model, batch) -> (loss, metrics)``. Minibatch ``k`` and the random numbers used
at step ``k`` (e.g. Hutchinson noise) are seeded by ``(seed, k)``, so a run resumed from a
checkpoint takes exactly the steps an uninterrupted run takes. Checkpoints hold only tensors,
numbers and strings and load with ``torch.load(..., weights_only=True)``; they are written through
a temporary ``<name>.<pid>.partial`` and ``os.replace``, only for weights whose loss was seen to be
finite, and a resume checks that the checkpoint belongs to the same run (:func:`check_resume`).

Long runs: under the ``full`` preset the trainer settings that notebooks pass to every ``fit``
hold :class:`RunCheckpoints`, so that every call checkpoints into the run's folder
(``fit-000-<desc>.ckpt``, ``fit-001-...``, numbered in call order: re-running the same notebook
loads the finished calls and resumes the interrupted one), and Lightning's CSV logger (and
TensorBoard's, if installed) writes each call's history next to it.
"""
from __future__ import annotations

import copy
import csv
import hashlib
import importlib.util
import logging
import math
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence, Union

import pandas as pd
import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from cnflib.core._validation import check_choice
from cnflib.core.odes import CountingField

Batch = Union[Tensor, tuple[Tensor, ...]]
LossFn = Callable[[nn.Module, Batch], tuple[Tensor, dict[str, float]]]
OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD}
HISTORY_PREFIX, SECONDS_KEY = "cnflib_history/", "cnflib_train_seconds"  # see FitModule.on_train_end

for _name in ("pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric"):
    logging.getLogger(_name).setLevel(logging.WARNING)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch on all devices (Lightning's ``seed_everything``, quietly)."""
    pl.seed_everything(seed, verbose=False)


def step_seed(seed: int, step: int) -> int:
    """The seed of training step ``step`` of a run seeded ``seed``: its minibatch and the noise
    drawn inside its loss are the same on every process and on a resumed run."""
    return seed * 1_000_003 + step


def cosine_schedule(steps: int, final: float = 0.0) -> Callable[[int], float]:
    """Multiplier of the learning rate at step ``s`` (for ``fit(lr_schedule=...)``): cosine decay from 1
    at step 0 to ``final`` at step ``steps`` (Loshchilov & Hutter 2017, SGDR, eq. 5 without restarts),
    held at ``final`` after it."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    return lambda s: final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))


def late_mean(values: pd.Series, fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of a history column (at least one row), e.g. the late
    forward NFE per iteration: how costly the learned dynamics are at the end of training."""
    return float(values.iloc[-max(math.floor(len(values) * fraction + 1e-9), 1):].mean())


@dataclass
class RunCheckpoints:
    """Where the fits of one run (a notebook, a sweep point) checkpoint: its n-th :func:`fit` call
    given these writes ``folder/fit-<n>[-<desc>].ckpt`` every ``every`` steps and at its end, and its
    history under ``folder/logs/<that name>/`` (CSV, and TensorBoard if installed).

    Calls are numbered in order, so that re-running the same notebook finds each call's file:
    finished calls are loaded, the interrupted one resumes. A file written by a different call
    (another model, batch size, learning rate, seed or ``desc``) is refused, not loaded.
    """

    folder: Path
    every: int = 100
    calls: int = 0

    def __post_init__(self) -> None:
        if self.every < 0:
            raise ValueError(f"every must be >= 0 steps, got {self.every}")
        self.folder = Path(self.folder)

    def next_file(self, desc: Optional[str] = None) -> Path:
        """The file of the next call (and count it)."""
        n, self.calls = self.calls, self.calls + 1
        label = re.sub(r"[^A-Za-z0-9.+=-]+", "_", desc or "").strip("_")[:40]
        return self.folder / (f"fit-{n:03d}-{label}.ckpt" if label else f"fit-{n:03d}.ckpt")


def flow_loss(weights: Optional[dict[str, float]] = None) -> LossFn:
    """Loss of a flow: mean NLL (nats) plus ``sum_j weights[j] * mean(regularizer_j)``.

    The metrics report ``nll`` and every integrated regularizer (weighted or not).
    """
    weights = dict(weights or {})

    def loss(model: nn.Module, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        out = model(x)
        nll = -out.log_prob(model.base).mean()
        total = nll
        metrics = {"nll": nll.item()}
        for name, value in out.regularizers.items():
            metrics[name] = value.mean().item()
            total = total + weights.get(name, 0.0) * value.mean()
        unknown = set(weights) - set(out.regularizers)
        if unknown:
            raise ValueError(f"weights given for unknown regularizers {sorted(unknown)}; the model integrates {sorted(out.regularizers)}")
        return total, metrics

    return loss


def nfe_totals(model: nn.Module) -> tuple[int, int]:
    """Cumulative (forward, backward) function evaluations of every ODE in ``model``."""
    fields = [m for m in model.modules() if isinstance(m, CountingField)]
    return sum(f.total_forward for f in fields), sum(f.total_backward for f in fields)


class _StepIndices(Dataset):
    """The dataset of step numbers ``start .. stop-1``; each step draws its own minibatch."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __len__(self) -> int:
        return self.stop - self.start

    def __getitem__(self, i: int) -> int:
        return self.start + i


def draw_batch(data: Sequence[Tensor], batch_size: int, seed: int, step: int) -> Batch:
    """Minibatch ``step`` of a run seeded ``seed``: ``batch_size`` rows drawn with replacement from
    tensors sharing their first dimension (a tensor if ``data`` holds one). The same everywhere."""
    generator = torch.Generator().manual_seed(step_seed(seed, step))
    idx = torch.randint(len(data[0]), (batch_size,), generator=generator)
    batch = tuple(d[idx] for d in data)
    return batch[0] if len(batch) == 1 else batch


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


def parameter_groups(model: nn.Module) -> list[dict]:
    """The optimizer's parameter groups: one per submodule with a float attribute ``own_lr`` (its
    parameters at that learning rate, e.g. InfoCNF's tolerance gates), then one with the rest at
    the optimizer's learning rate. Without such submodules: one group with every parameter."""
    groups, claimed = [], set()
    for module in model.modules():
        lr = getattr(module, "own_lr", None)
        if lr is None:
            continue
        params = [p for p in module.parameters() if id(p) not in claimed]
        claimed.update(id(p) for p in params)
        if params:
            groups.append({"params": params, "lr": float(lr)})
    rest = [p for p in model.parameters() if id(p) not in claimed]
    return ([{"params": rest}] if rest else []) + groups


class FitModule(pl.LightningModule):
    """The LightningModule behind :func:`fit` (usable with any Lightning ``Trainer``)."""

    def __init__(self, model: nn.Module, data: Sequence[Tensor], loss: LossFn, *, batch_size: int,
                 lr: float, weight_decay: float, optimizer: str, seed: int, steps: int,
                 lr_schedule: Optional[Callable[[int], float]] = None) -> None:
        super().__init__()
        self.model, self.data, self.loss_fn = model, data, loss
        self.batch_size, self.lr, self.weight_decay, self.seed = batch_size, lr, weight_decay, seed
        self.optimizer_name = check_choice("optimizer", optimizer, OPTIMIZERS)
        self.steps, self.lr_schedule = steps, lr_schedule
        self.start_step = 0
        self.rows: list[dict[str, float]] = []
        self.train_seconds = self.cpu_seconds = 0.0
        self.optimizer_state: Optional[dict] = None
        self.evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None
        self.eval_every = 0
        self.on_checkpoint: Optional[Callable[[int], None]] = None
        self.checkpoint_every = 0
        self.write_pending: Optional[Callable[[], None]] = None  # a checkpoint awaiting a finite loss
        self.checkpoint_note = ""  # where the last good checkpoint is, for the message of a non-finite loss
        self.identity: dict = {}  # what a checkpoint records of the run (see run_identity)

    def configure_optimizers(self):
        optimizer = OPTIMIZERS[self.optimizer_name](parameter_groups(self.model), lr=self.lr,
                                                    weight_decay=self.weight_decay)
        if self.optimizer_state is not None:
            optimizer.load_state_dict(self.optimizer_state)
        if self.lr_schedule is None:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, self.lr_schedule, last_epoch=-1)
        for _ in range(self.start_step):  # replay the schedule up to the resumed step
            scheduler.step()
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_StepIndices(self.start_step, self.steps), batch_size=None, shuffle=False)

    def on_train_batch_start(self, step: Tensor, batch_idx: int) -> None:
        self._t0, self._cpu0, self._nfe0 = time.perf_counter(), time.process_time(), nfe_totals(self.model)

    def training_step(self, step: Tensor, batch_idx: int) -> Tensor:
        step = int(step)
        torch.manual_seed(step_seed(self.seed, step))  # noise drawn inside the step
        batch = draw_batch(self.data, self.batch_size, self.seed, step)
        batch = batch.to(self.device) if isinstance(batch, Tensor) else tuple(b.to(self.device) for b in batch)
        world = self.trainer.world_size
        if world > 1:  # data parallel: this process's share of the step's global batch
            batch = shard(batch, self.trainer.global_rank, world)
        loss, metrics = self.loss_fn(self.model, batch)
        if world > 1:  # log the global batch's mean (equal shards: the mean of the shards' means)
            names = list(metrics)
            totals = torch.tensor([loss.item(), *(float(metrics[k]) for k in names)], dtype=torch.float64,
                                  device=loss.device)
            totals = (self.trainer.strategy.reduce(totals, reduce_op="sum") / world).tolist()
            logged_loss, metrics = totals[0], dict(zip(names, totals[1:]))
        else:
            logged_loss = loss.item()
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"the loss is {loss.item()} at step {step + 1} (1-based) of {self.steps}: training stopped"
                f"{self.checkpoint_note}. Lower the learning rate, tighten the solver tolerances or add "
                "regularization."
            )
        if self.write_pending is not None:  # the weights of the held checkpoint gave a finite loss
            self.write_pending()
        self._row = {"step": step + 1, "loss": logged_loss, **metrics,
                     "nfe_forward": nfe_totals(self.model)[0] - self._nfe0[0]}
        return loss

    def on_train_end(self) -> None:
        # A forked or spawned DDP run (``ddp_notebook``, ``ddp_spawn``) trains in child processes and
        # sends back only the weights and ``callback_metrics``: carry the history there.
        if self.trainer.world_size > 1 and self.trainer.global_rank == 0:
            for name, column in _history_tensors(self.rows).items():
                self.trainer.callback_metrics[HISTORY_PREFIX + name] = column
            self.trainer.callback_metrics[SECONDS_KEY] = torch.tensor(self.train_seconds)

    def on_train_batch_end(self, outputs, step: Tensor, batch_idx: int) -> None:
        self.train_seconds += time.perf_counter() - self._t0
        self.cpu_seconds += time.process_time() - self._cpu0
        row = {**self._row, "nfe_backward": nfe_totals(self.model)[1] - self._nfe0[1], "seconds": self.train_seconds,
               "cpu_seconds": self.cpu_seconds}
        done = row["step"]
        if self.evaluate is not None and (done == self.steps or (self.eval_every and done % self.eval_every == 0)):
            was_training = self.model.training
            self.model.eval()
            with torch.no_grad():
                row.update({f"eval_{k}": float(v) for k, v in self.evaluate(self.model).items()})
            self.model.train(was_training)
        self.rows.append(row)
        if self.trainer.is_global_zero:
            for logger in self.trainer.loggers:
                logger.log_metrics({k: v for k, v in row.items() if k != "step"}, step=done)
        if self.on_checkpoint is not None and (done == self.steps or (self.checkpoint_every and done % self.checkpoint_every == 0)):
            if self.trainer.is_global_zero:  # one writer; every rank holds the same weights
                self.on_checkpoint(done)
                for logger in self.trainer.loggers:
                    logger.save()  # the history on disk reaches at least the checkpoint


class _ProgressBar(pl.Callback):
    """A light tqdm bar (plain text, so executed notebooks stay small)."""

    def __init__(self, total: int, initial: int, desc: Optional[str]) -> None:
        self.bar = tqdm(total=total, initial=initial, desc=desc, file=sys.stderr, mininterval=2.0,
                        ncols=100, leave=True)

    def on_train_batch_end(self, trainer, module: FitModule, outputs, batch, batch_idx) -> None:
        row = module._row
        self.bar.set_postfix(loss=f"{row['loss']:.3f}", nfe=int(row["nfe_forward"]), refresh=False)
        self.bar.update(1)

    def on_train_end(self, trainer, module) -> None:
        self.bar.close()


def _history(rows: list[dict[str, float]]) -> pd.DataFrame:
    return pd.DataFrame(rows).set_index("step") if rows else pd.DataFrame()


def _history_tensors(rows: list[dict[str, float]]) -> dict[str, Tensor]:
    """The rows as one float64 column per metric (NaN where a row lacks it)."""
    columns = sorted({k for row in rows for k in row})
    return {c: torch.tensor([row.get(c, math.nan) for row in rows], dtype=torch.float64) for c in columns}


def checkpoint_state(module: FitModule, optimizer: torch.optim.Optimizer, step: int) -> dict:
    """A copy of what a checkpoint holds after ``step`` steps: model, optimizer, step, seed,
    the run's identity (:func:`run_identity`), training time and history (tensors, numbers, strings)."""
    state = {"model": module.model.state_dict(), "optimizer": optimizer.state_dict(), "step": step,
             "seed": module.seed, "train_seconds": module.train_seconds, "history": _history_tensors(module.rows),
             "rng": torch.get_rng_state(), **_cuda_rng(), **module.identity}
    return copy.deepcopy(state)


def write_checkpoint(path: Union[str, Path], state: dict) -> None:
    """Write ``state`` to ``path`` atomically, through ``<name>.<pid>.partial`` in the same folder (a
    name that is never the target's nor another target's temporary) and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.partial")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    _remove_stale_temporaries(path)


def save_checkpoint(path: Union[str, Path], module: FitModule, optimizer: torch.optim.Optimizer, step: int) -> None:
    """Write model, optimizer, step and history (tensors, numbers and strings only) atomically."""
    write_checkpoint(path, checkpoint_state(module, optimizer, step))


def _cuda_rng() -> dict[str, list[Tensor]]:
    """The CUDA generators' states, when CUDA is in use (``{}`` otherwise)."""
    return {"cuda_rng": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {}


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporaries of ``path`` left by killed runs (never the file itself)."""
    for stale in path.parent.glob(f"{path.name}.*.partial"):
        stale.unlink(missing_ok=True)


def load_checkpoint(path: Union[str, Path]) -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``).

    Raises ValueError naming the file if it is empty, truncated, corrupt or not a cnflib checkpoint.
    """
    path = Path(path)
    fix = "delete it to train from scratch, or pass another checkpoint path"
    if path.stat().st_size == 0:
        raise ValueError(f"the checkpoint {path} is empty (0 bytes): {fix}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # zip, pickle and EOF errors of a truncated or corrupt file
        raise ValueError(f"the checkpoint {path} is truncated or corrupt ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}): {fix}") from error
    missing = [k for k in ("model", "optimizer", "step", "seed", "train_seconds", "history")
               if not isinstance(state, dict) or k not in state]
    if missing:
        raise ValueError(f"{path} is not a checkpoint written by cnflib.core.train.fit (it lacks {missing}): {fix}")
    return state


def data_fingerprint(data: Sequence[Tensor]) -> str:
    """A digest of the training tensors (shapes, dtypes and bytes): sha1 hex."""
    digest = hashlib.sha1()
    for tensor in data:
        digest.update(f"{tuple(tensor.shape)}{tensor.dtype};".encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def run_identity(data: Sequence[Tensor], settings: dict) -> dict:
    """What a checkpoint records of its run, checked on resume: data fingerprint and settings."""
    return {"data_fingerprint": data_fingerprint(data), "settings": {k: settings[k] for k in sorted(settings)}}


def check_resume(path: Path, state: dict, *, seed: int, steps: int, identity: dict) -> None:
    """Refuse to resume from a checkpoint of another run: raises ValueError naming what differs
    (seed, step count, data fingerprint, settings). Checkpoints written before the fingerprint was
    recorded are checked for seed and step count only."""
    differs = []
    if int(state["seed"]) != seed:
        differs.append(f"seed: {int(state['seed'])} in the checkpoint, {seed} now")
    if int(state["step"]) > steps:
        differs.append(f"steps: the checkpoint holds {int(state['step'])} steps, more than steps={steps}")
    if "data_fingerprint" in state and state["data_fingerprint"] != identity["data_fingerprint"]:
        differs.append(f"data: fingerprint {state['data_fingerprint'][:12]} in the checkpoint, "
                       f"{identity['data_fingerprint'][:12]} now (other tensors, rows or order)")
    for key, value in state.get("settings", {}).items():
        now = identity["settings"].get(key)
        if value != now:
            differs.append(f"{key}: {value!r} in the checkpoint, {now!r} now")
    if differs:
        raise ValueError(f"the checkpoint {path} belongs to another run; it differs in " + "; ".join(differs)
                         + ". Pass another checkpoint path (or delete this one) to train anew, or "
                         "force_resume=True to resume from it anyway.")


def _loggers(checkpoint: Path, start_step: int, flush_every: int) -> list:
    """CSV (and, if installed, TensorBoard) loggers of the run checkpointed in ``checkpoint``, under
    ``<its folder>/logs/<its name>/``; a resumed run's CSV keeps only the rows up to ``start_step``."""
    from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

    root, name = checkpoint.parent / "logs", checkpoint.stem
    csv_logger = CSVLogger(root, name="", version=name, flush_logs_every_n_steps=max(flush_every, 1))
    path = Path(csv_logger.log_dir) / "metrics.csv"
    kept = _csv_rows(path, start_step)
    with warnings.catch_warnings():  # its writer starts by deleting the file: put back the rows the run keeps
        warnings.filterwarnings("ignore", message=".*exists and is not empty.*")
        csv_logger.experiment
    _write_csv(path, kept)
    loggers: list = [csv_logger]
    if importlib.util.find_spec("tensorboard") or importlib.util.find_spec("tensorboardX"):
        loggers.append(TensorBoardLogger(root, name="", version=name + "-tensorboard"))
    return loggers


def _csv_rows(path: Path, step: int) -> list[dict[str, str]]:
    """The rows of ``path`` (a CSVLogger file, if it exists) whose step is at most ``step``."""
    if not path.is_file():
        return []
    with path.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row.get("step") and float(row["step"]) <= step]


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    """Write ``rows`` to ``path`` with a header (nothing when there are none)."""
    if not rows:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _rows_from(history: dict[str, Tensor]) -> list[dict[str, float]]:
    columns = list(history)
    n = len(history[columns[0]]) if columns else 0
    rows = [{c: float(history[c][i]) for c in columns if not math.isnan(float(history[c][i]))} for i in range(n)]
    for row in rows:
        row["step"] = int(row["step"])
    return rows


def _checkpointer(path: Path, module: FitModule, trainer: pl.Trainer) -> Callable[[int], None]:
    """``on_checkpoint(step)`` of :func:`fit`: a checkpoint is held in memory until the next step's
    loss is finite (:meth:`FitModule.training_step` writes it then), the last one written at once
    if the weights are finite; so the file always holds weights whose loss was finite."""
    if module.start_step:
        module.checkpoint_note = f"; {path} keeps step {module.start_step}, the last good one"

    def write(state: dict) -> None:
        write_checkpoint(path, state)
        module.checkpoint_note = f"; {path} keeps step {state['step']}, the last good one"
        module.write_pending = None

    def on_checkpoint(step: int) -> None:
        state = checkpoint_state(module, trainer.optimizers[0], step)
        if step < module.steps:
            module.write_pending = lambda: write(state)
        elif all(bool(torch.isfinite(p).all()) for p in module.model.parameters()):
            write(state)
        else:
            raise FloatingPointError(f"the weights are not finite after the last step {step}: {path} not "
                                     f"written{module.checkpoint_note}. Lower the learning rate.")

    return on_checkpoint


def fit(model: nn.Module, data: Union[Tensor, Sequence[Tensor]], *, steps: int, loss: Optional[LossFn] = None,
        batch_size: int = 100, lr: float = 1e-3, weight_decay: float = 0.0, optimizer: str = "adam",
        lr_schedule: Optional[Callable[[int], float]] = None, seed: int = 0,
        evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None, eval_every: int = 0,
        checkpoint: Union[str, Path, None] = None, checkpoint_every: int = 0,
        checkpoints: Optional[RunCheckpoints] = None, force_resume: bool = False,
        max_grad_norm: Optional[float] = None, progress: bool = True, desc: Optional[str] = None,
        accelerator: str = "cpu", devices: Union[int, str] = 1, strategy: str = "auto",
        num_nodes: int = 1) -> pd.DataFrame:
    """Train ``model`` for ``steps`` minibatch steps and return its history.

    Arguments:
        model: any module; for flows the default ``loss`` is :func:`flow_loss` (mean NLL).
        data: a tensor [N, ...] or tensors sharing their first dimension (e.g. ``(x, y)``).
        loss: ``loss(model, batch) -> (loss, metrics)``.
        lr_schedule: multiplier of ``lr`` as a function of the step (``LambdaLR``).
        evaluate: ``evaluate(model) -> metrics``, run without gradient every ``eval_every``
            steps and after the last one, logged with an ``eval_`` prefix.
        checkpoint: a file; if it exists, training resumes from it (nothing lost) or, if it is
            complete, is skipped and its stored history returned ("train or load"). It is written
            every ``checkpoint_every`` steps and after the last, each time once the next step's loss
            is finite, so a diverged run keeps its last good checkpoint. A loaded finished checkpoint leaves the
            random number generators as the finished run left them. With a checkpoint, the
            history is also logged under ``<its folder>/logs/<its name>/metrics.csv``.
        checkpoints: a run's :class:`RunCheckpoints` (``configure_trainer`` puts them in the
            trainer settings under the ``full`` preset): without ``checkpoint``, this call's file
            is their next one, written every ``checkpoints.every`` steps unless ``checkpoint_every``.
        force_resume: resume from ``checkpoint`` even if its seed, data fingerprint or settings
            differ from this call's, or it holds more than ``steps`` steps (by default that raises
            ValueError saying what differs).
        accelerator, devices, strategy, num_nodes: passed to Lightning's ``Trainer``; notebooks take
            them from :func:`cnflib.collection.presets.configure_trainer` and pass them to every call.

    The model is trained on the chosen accelerator and returned to the device it was given on.
    Data parallel (``devices > 1``, ``strategy="ddp"``, or ``"ddp_notebook"`` in a notebook): every
    process takes every step on its equal share of the step's global batch of ``batch_size``, so
    the run takes the same steps, on the same batches, as one process (up to rounding, and up to
    noise drawn inside the loss), and the history logs the global batch's mean loss.

    Returns:
        A DataFrame indexed by step: loss, metrics, nfe_forward, nfe_backward, seconds
        (cumulative training wall time), cpu_seconds (cumulative CPU time of this process in the
        training steps, evaluation excluded) and the ``eval_*`` columns. Both times add up across
        a resumed run.

    Raises:
        FloatingPointError: the loss became NaN or infinite (the message gives the 1-based step).
        ValueError: the checkpoint is unreadable or belongs to another run (see ``force_resume``).
    """
    data = (data,) if isinstance(data, Tensor) else tuple(data)
    if checkpoint is None and checkpoints is not None:
        checkpoint, checkpoint_every = checkpoints.next_file(desc), checkpoint_every or checkpoints.every
    module = FitModule(model, data, loss or flow_loss(), batch_size=batch_size, lr=lr, weight_decay=weight_decay,
                       optimizer=optimizer, seed=seed, steps=steps, lr_schedule=lr_schedule)
    module.evaluate, module.eval_every = evaluate, eval_every
    if checkpoint is not None:
        module.identity = run_identity(data, {"batch_size": batch_size, "lr": lr, "weight_decay": weight_decay,
                                              "optimizer": optimizer, "max_grad_norm": max_grad_norm})
    if checkpoint is not None and Path(checkpoint).exists():
        state = load_checkpoint(checkpoint)
        if not force_resume:
            check_resume(Path(checkpoint), state, seed=seed, steps=steps, identity=module.identity)
        _remove_stale_temporaries(Path(checkpoint))
        model.load_state_dict(state["model"])
        module.start_step, module.optimizer_state = int(state["step"]), state["optimizer"]
        module.rows, module.train_seconds = _rows_from(state["history"]), float(state["train_seconds"])
        module.cpu_seconds = float(module.rows[-1].get("cpu_seconds", 0.0)) if module.rows else 0.0
        if module.start_step >= steps:  # later random draws as after the uninterrupted run
            if "rng" in state:
                torch.set_rng_state(state["rng"])
            if "cuda_rng" in state and torch.cuda.is_available() and torch.cuda.device_count() == len(state["cuda_rng"]):
                torch.cuda.set_rng_state_all(state["cuda_rng"])
            print(f"[cnflib] fit: {checkpoint} is complete ({module.start_step} steps): loaded, not retrained",
                  file=sys.stderr, flush=True)
        else:
            print(f"[cnflib] fit: resuming from {checkpoint} at step {module.start_step} of {steps}",
                  file=sys.stderr, flush=True)
    if module.start_step >= steps:
        return _history([r for r in module.rows if r["step"] <= steps])

    home = next(model.parameters()).device
    callbacks: list[pl.Callback] = [_ProgressBar(steps, module.start_step, desc)] if progress else []
    hardware = {"accelerator": accelerator, "devices": devices, "strategy": strategy, "num_nodes": num_nodes}
    loggers = _loggers(Path(checkpoint), module.start_step, checkpoint_every) if checkpoint is not None else False
    trainer = pl.Trainer(max_steps=steps - module.start_step, max_epochs=1, **hardware, logger=loggers,
                         log_every_n_steps=1,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                         num_sanity_val_steps=0, limit_val_batches=0,
                         use_distributed_sampler=False,  # data parallel: every process takes every step
                         gradient_clip_val=max_grad_norm, callbacks=callbacks)
    if checkpoint is not None:
        module.on_checkpoint = _checkpointer(Path(checkpoint), module, trainer)
        module.checkpoint_every = checkpoint_every
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|GPU available|TPU available|LitLogger|litlogger|treespec|exists and is not empty|logging interval).*")
        warnings.filterwarnings("ignore", category=UserWarning, module="(pytorch_)?lightning.*")
        trainer.fit(module)
    returned = {k[len(HISTORY_PREFIX):]: v for k, v in trainer.callback_metrics.items() if k.startswith(HISTORY_PREFIX)}
    if returned and len(module.rows) == module.start_step:  # the steps were taken in forked processes
        module.train_seconds = float(trainer.callback_metrics[SECONDS_KEY])
        module.rows = _rows_from(returned)
    model.to(home)  # Lightning leaves the model on the CPU: return it where it was given
    return _history(module.rows)
