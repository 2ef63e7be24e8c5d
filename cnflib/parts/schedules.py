"""Learning flows by parts (Bhatt & Inouye): a flow split into gradient-isolated parts.

A flow ``f = f_K o ... o f_1`` (a :class:`~cnflib.models.glow.FlowSequence`) is cut into K parts
of consecutive layers. Part k is trained on the *truncated objective*

    L_k(theta_k) = -log N(f_k(h_{k-1}); 0, I) - log|det d f_k / d h_{k-1}|,   h_{k-1} = f^(1:k-1)(x) detached,

i.e. the NLL of the shorter flow ``f^(1:k)`` with a standard-normal prior: a valid density model on
its own, so each part has a local maximum-likelihood objective, and L_K is the full objective.
No gradient crosses a part boundary. The reported per-part loss adds the (constant for part k)
log-dets of parts 1..k-1, so it is the truncated flow's NLL in nats.

Schedules (:func:`train_schedule`), all on :func:`cnflib.core.train.fit`:

* ``end_to_end``: the full NLL, ``steps`` steps;
* ``sequential``: part 1 for ``steps // K`` steps, then part 2, ...;
* ``alternate``: round-robin, part ``(s // period) mod K`` at step s, ``steps`` steps;
* ``alternate_finetune``: ``alternate``, then ``finetune_steps`` end-to-end steps.

Each records the training time, the test NLL (and bits/dim) of the whole flow and of each
truncated flow, and the per-part training losses. Time is recorded twice: ``seconds`` (wall time of
the training steps, from :func:`cnflib.core.train.fit`) and ``cpu_seconds`` (this process's CPU time
in the training steps, evaluation excluded, also from ``fit``, so that both add up over a resumed
run). On a CPU shared with other jobs wall time
depends on their load; CPU time of a single-threaded run does not, so it compares schedules fairly
there (on a GPU, use wall time). :func:`time_to_target` reads off when a run first reaches a test
bits/dim (the poster's "matches end-to-end in less time").

Optimizer state: every phase is one :func:`cnflib.core.train.fit` call with its own Adam, so the
fine-tuning (and each sequential part) starts from zero moments and a restarted bias correction. In
the alternate phase one Adam holds every part; a part that is not trained at a step has no gradient
and Adam leaves its parameters and moments untouched, so each part's moments advance on its own steps only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional

import pandas as pd
import torch
from torch import Tensor, nn

from cnflib.core._validation import check_choice
from cnflib.core.transforms import bits_per_dim
from cnflib.core.flow import FlowOutput
from cnflib.models.glow import FlowSequence
from cnflib.core.train import LossFn, fit, flow_loss

SPLITS: tuple[str, ...] = ("by_blocks", "across_blocks")
SCHEDULES: tuple[str, ...] = ("end_to_end", "sequential", "alternate", "alternate_finetune")
Bounds = list[tuple[int, int]]
Preprocess = Callable[[Tensor], Tensor]


def _even_cuts(sizes: list[int], parts: int) -> list[int]:
    """Indices 0 < c_1 < .. < c_{K-1} < len(sizes) cutting ``sizes`` into ``parts`` runs of near-equal sum."""
    total, cuts, acc = sum(sizes), [], 0
    for i, size in enumerate(sizes[:-1]):
        acc += size
        need = parts - 1 - len(cuts)
        if need and (acc >= total * (len(cuts) + 1) / parts or len(sizes) - i - 1 == need):
            cuts.append(i + 1)
    return cuts


def part_bounds(flow: FlowSequence, parts: int, how: str = "across_blocks") -> Bounds:
    """Layer ranges ``[(start, stop), ...]`` of ``parts`` consecutive parts.

    ``by_blocks``: cuts only between blocks (each part holds whole blocks, near-equal numbers of
    layers; ``parts <= blocks``). ``across_blocks``: near-equal numbers of layers per part, cut
    anywhere (a boundary may fall inside a block, as in the poster's 2-part split of a 3-block Glow).
    """
    check_choice("split", how, SPLITS)
    n = len(flow.layers)
    if how == "by_blocks":
        starts = [i for i in range(n) if i == 0 or flow.blocks[i] != flow.blocks[i - 1]]
        if parts > len(starts):
            raise ValueError(f"cannot split {len(starts)} blocks into {parts} parts by blocks")
        sizes = [b - a for a, b in zip(starts, starts[1:] + [n])]
        cuts = [starts[c] for c in _even_cuts(sizes, parts)]
    else:
        if parts > n:
            raise ValueError(f"cannot split {n} layers into {parts} parts")
        cuts = _even_cuts([1] * n, parts)
    edges = [0, *cuts, n]
    return list(zip(edges[:-1], edges[1:]))


def part_forward(flow: FlowSequence, bounds: Bounds, k: int, x: Tensor) -> FlowOutput:
    """Input of part k computed without gradient, then part k with gradient.

    x: [n, *event_shape] -> FlowOutput(z_k [n, D], log-det of parts < k (no grad) + of part k [n]).
    """
    h = x.reshape(x.shape[0], -1)
    with torch.no_grad():
        before = flow.run(h, 0, bounds[k][0])
    return before.then(flow.run(before.z, *bounds[k]))


def truncated_nll(flow: FlowSequence, bounds: Bounds, k: int, x: Tensor) -> Tensor:
    """Mean truncated objective of part k (nats; the NLL of the flow cut after part k, under the
    flow's base distribution). Its gradient reaches only part k's parameters. x: [n, *event_shape] -> []."""
    return -part_forward(flow, bounds, k, x).log_prob(flow.base).mean()


def part_loss(bounds: Bounds, part: Callable[[], int], preprocess: Optional[Preprocess] = None) -> LossFn:
    """A ``loss(model, batch)`` for :func:`cnflib.core.train.fit`: the truncated objective of part
    ``part()`` (called once per step) on ``preprocess(batch)``; metrics ``part`` and ``nll_part{k}``."""

    def loss(model: nn.Module, batch: Tensor) -> tuple[Tensor, dict[str, float]]:
        k = part()
        x = preprocess(batch) if preprocess is not None else batch
        value = truncated_nll(model, bounds, k, x)
        return value, {"part": float(k), f"nll_part{k}": value.item()}

    return loss


def round_robin(parts: int, period: int = 1) -> Callable[[], int]:
    """A counter giving part ``(call // period) mod parts`` on each call (one call per training step)."""
    calls = [0]

    def next_part() -> int:
        k = (calls[0] // period) % parts
        calls[0] += 1
        return k

    return next_part


@torch.no_grad()
def evaluate_parts(flow: FlowSequence, bounds: Bounds, x: Tensor, batch_size: int = 1000) -> dict[str, float]:
    """Mean test NLL (nats) of every truncated flow and of the whole flow in one pass.

    x: [n, *event_shape] (already dequantized) -> {"nll_part0": .., "nll_part{K-1}": .., "nll": ..}.
    """
    totals = [0.0] * len(bounds)
    for chunk in x.to(next(flow.parameters()).device).split(batch_size):
        h = chunk.reshape(chunk.shape[0], -1)
        out = FlowOutput(h, h.new_zeros(h.shape[0]))
        for k, (a, b) in enumerate(bounds):
            out = out.then(flow.run(out.z, a, b))
            totals[k] -= out.log_prob(flow.base).sum().item()
    metrics = {f"nll_part{k}": t / len(x) for k, t in enumerate(totals)}
    metrics["nll"] = metrics[f"nll_part{len(bounds) - 1}"]
    return metrics


@dataclass
class ScheduleResult:
    """One schedule's run: ``history`` (one row per step: phase, part, loss, cumulative ``seconds``
    and ``cpu_seconds`` over all phases, ``eval_*`` test metrics, ``*_bpd`` when ``levels`` was given)
    and the final test metrics ``final`` (nll, nll_part{k}, bpd...)."""

    schedule: str
    parts: int
    history: pd.DataFrame
    final: dict[str, float]

    @property
    def seconds(self) -> float:
        """Training wall time of the whole schedule (evaluation excluded)."""
        return float(self.history.seconds.iloc[-1])

    @property
    def cpu_seconds(self) -> float:
        """Training CPU time of this process for the whole schedule (evaluation excluded)."""
        return float(self.history.cpu_seconds.iloc[-1])

    def step_seconds(self, clock: str = "cpu_seconds") -> pd.Series:
        """Median duration of one training step (from ``clock``) per phase and part, e.g.
        ``{("end_to_end", -1): 0.09}`` or ``{("alternate", 0): 0.05, ("alternate", 1): 0.04}``
        (part -1: every part at once)."""
        h = self.history
        duration = h.groupby("phase", sort=False)[clock].diff()
        part = h["part"].fillna(-1) if "part" in h else pd.Series(-1.0, index=h.index)
        return duration.groupby([h.phase, part.astype(int)], sort=False).median()

    def typical_seconds(self, clock: str = "cpu_seconds") -> float:
        """Training time with every step at the median duration of its kind (phase and part), from ``clock``
        ("cpu_seconds" or "seconds"): the measured time without the load spikes of a shared machine."""
        h = self.history
        duration = h.groupby("phase", sort=False)[clock].diff()
        part = h["part"].fillna(-1) if "part" in h else pd.Series(-1.0, index=h.index)
        return float(duration.groupby([h.phase, part]).transform("median").sum())


def _with_bpd(frame: pd.DataFrame, dims: int, levels: Optional[int]) -> pd.DataFrame:
    if levels is None:
        return frame
    for col in [c for c in frame.columns if c.startswith(("eval_nll", "nll"))]:
        frame[col.replace("nll", "bpd")] = bits_per_dim(torch.tensor(frame[col].to_numpy()), dims, levels).numpy()
    return frame


def train_schedule(flow: FlowSequence, schedule: str, data: Tensor, test: Tensor, *, parts: int = 2,
                   split: str = "across_blocks", steps: int = 500, finetune_steps: int = 0, period: int = 1,
                   preprocess: Optional[Preprocess] = None, levels: Optional[int] = None,
                   eval_every: int = 50, validation: Optional[Tensor] = None, **fit_options: Any) -> ScheduleResult:
    """Train ``flow`` in place with ``schedule`` (see the module docstring) and measure it.

    Arguments:
        data: training tensor [N, ...]; each minibatch goes through ``preprocess`` (e.g. dequantization).
        test: preprocessed test points [M, *event_shape] (fixed noise), evaluated every ``eval_every`` steps.
        parts, split: the K parts and how they are cut (:func:`part_bounds`); ``end_to_end`` still
            reports the truncated NLLs of the same parts.
        levels: if given, NLLs are also reported as bits/dim of ``levels``-level discrete data.
        validation: optional preprocessed validation points [V, *event_shape]; their NLL of the whole
            flow is logged beside the test metrics as ``eval_nll_val`` (``eval_bpd_val``), for selection.
        fit_options: passed to :func:`cnflib.core.train.fit` (batch_size, lr, seed, accelerator, ...).
    """
    check_choice("schedule", schedule, SCHEDULES)
    bounds = part_bounds(flow, parts, split)
    end_to_end = flow_loss() if preprocess is None else (lambda model, batch: flow_loss()(model, preprocess(batch)))
    phases: list[tuple[str, LossFn, int]]
    if schedule == "end_to_end":
        phases = [("end_to_end", end_to_end, steps)]
    elif schedule == "sequential":
        phases = [(f"part{k}", part_loss(bounds, lambda k=k: k, preprocess), steps // parts) for k in range(parts)]
    else:
        phases = [("alternate", part_loss(bounds, round_robin(parts, period), preprocess), steps)]
        if schedule == "alternate_finetune":
            phases.append(("finetune", end_to_end, finetune_steps))

    def evaluate(model: nn.Module) -> dict[str, float]:
        metrics = evaluate_parts(model, bounds, test)
        if validation is not None:
            metrics["nll_val"] = evaluate_parts(model, [(0, len(model.layers))], validation)["nll"]
        return metrics

    frames, offset, cpu_offset, done = [], 0.0, 0.0, 0
    seed = fit_options.pop("seed", 0)
    for i, (phase, loss, n_steps) in enumerate(phases):
        if n_steps <= 0:
            continue
        history = fit(flow, data, steps=n_steps, loss=loss, evaluate=evaluate, eval_every=eval_every,
                      seed=seed + 7919 * i, desc=f"{schedule}:{phase}", **fit_options)
        history = history.assign(phase=phase, seconds=history.seconds + offset,
                                 cpu_seconds=history.cpu_seconds + cpu_offset)
        history.index = history.index + done
        offset, cpu_offset = float(history.seconds.iloc[-1]), float(history.cpu_seconds.iloc[-1])
        done += n_steps
        frames.append(history)
    frame = _with_bpd(pd.concat(frames), math.prod(flow.event_shape), levels)
    final = {k[len("eval_"):]: float(v) for k, v in frame.iloc[-1].items() if str(k).startswith("eval_")}
    return ScheduleResult(schedule, parts, frame, final)


def time_to_target(result: ScheduleResult, target: float, clock: str = "cpu_seconds",
                   metric: str = "eval_bpd") -> float:
    """Training time (``clock``: "cpu_seconds" or "seconds") at the first evaluation whose ``metric``
    is at or below ``target``; ``inf`` if no evaluation reaches it (the run "never" does)."""
    h = result.history.dropna(subset=[metric])
    hit = h[h[metric] <= target]
    return float(hit[clock].iloc[0]) if len(hit) else math.inf


def schedule_table(results: dict[str, ScheduleResult]) -> pd.DataFrame:
    """The poster's table: one row per run (parts, final test bits/dim if recorded else NLL, training
    wall seconds, CPU seconds, wall minutes, and the whole run's :meth:`ScheduleResult.typical_seconds` of CPU), plus, for ``alternate_finetune`` runs, a row at the end of the alternate phase."""
    rows = []
    for name, result in results.items():
        h = result.history
        metric = "eval_bpd" if "eval_bpd" in h else "eval_nll"
        ends = [("", h)]
        if result.schedule == "alternate_finetune":
            ends.insert(0, (" (before fine-tuning)", h[h.phase == "alternate"]))
        for suffix, frame in ends:
            last = frame.iloc[-1]
            rows.append({"run": name + suffix, "schedule": result.schedule, "parts": result.parts,
                         metric[len("eval_"):]: float(last[metric]), "seconds": float(last.seconds),
                         "cpu_seconds": float(last.cpu_seconds), "minutes": float(last.seconds) / 60})
        rows[-1]["typical_cpu_seconds"] = result.typical_seconds("cpu_seconds")
    return pd.DataFrame(rows).set_index("run")
