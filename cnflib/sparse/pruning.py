"""Pruning continuous-depth models (Liebenwein et al., "Sparse Flows", NeurIPS 2021).

Two criteria, both stored as ``torch.nn.utils.prune`` masks (a ``<name>_orig`` parameter and a
``<name>_mask`` buffer per pruned tensor, the effective tensor being their product), so that the
pruned weights stay zero through optimizer steps, checkpoints and reloads:

* ``"unstructured"``: global magnitude pruning, the smallest-|w| weights of all prunable layers
  together (Sparse Flows' unstructured baseline);
* ``"structured"``: ℓ1 neuron pruning, the same fraction of neurons removed in every hidden
  layer, the neurons with the smallest ℓ1 norm of incoming weights going first. A removed
  neuron loses its incoming weights, bias, time gate and shift and its outgoing weights.

``ratio`` always means the fraction of the *prunable weights* (the state-acting ``nn.Linear``
weights, not the small time hyper-networks or biases) that are removed, counted over the whole
model, so that both criteria share one x-axis. :func:`prune_retrain` runs the iterative
schedule of the paper: train, then repeatedly prune to the next ratio and retrain with the
learning-rate schedule replayed from its start.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

import pandas as pd
import torch
from torch import Tensor, nn
from torch.nn.utils import prune as torch_prune

from cnflib.core._validation import check_choice
from cnflib.core.vector_fields import ConcatSquashLinear
from cnflib.core.train import fit

METHODS: tuple[str, ...] = ("unstructured", "structured")


# -- which tensors are pruned -------------------------------------------------------------------
def prunable_layers(model: nn.Module) -> list[nn.Linear]:
    """The state-acting ``nn.Linear`` layers of ``model`` in module order (data-flow order for
    feed-forward fields). The ``gate``/``shift`` time hyper-networks of
    :class:`~cnflib.core.vector_fields.ConcatSquashLinear` are excluded."""
    hyper = {id(m) for layer in model.modules() if isinstance(layer, ConcatSquashLinear) for m in (layer.gate, layer.shift)}
    return [m for m in model.modules() if isinstance(m, nn.Linear) and id(m) not in hyper]


def _owner(model: nn.Module, linear: nn.Linear) -> Optional[ConcatSquashLinear]:
    return next((m for m in model.modules() if isinstance(m, ConcatSquashLinear) and m.linear is linear), None)


def effective(module: nn.Module, name: str) -> Tensor:
    """The tensor a (possibly pruned) module computes with: ``orig * mask`` or the plain parameter."""
    mask = getattr(module, f"{name}_mask", None)
    if mask is None:
        return getattr(module, name).detach()
    return (getattr(module, f"{name}_orig") * mask).detach()


def _set_mask(module: nn.Module, name: str, mask: Tensor) -> None:
    """Install ``mask`` on ``module.<name>``, replacing any earlier mask (masks only grow)."""
    old = getattr(module, f"{name}_mask", None)
    if old is None:
        torch_prune.custom_from_mask(module, name, mask.to(getattr(module, name)).contiguous())
    else:
        old.copy_(mask * old)
        setattr(module, name, getattr(module, f"{name}_orig") * old)


# -- the two criteria -------------------------------------------------------------------------------
def prune_unstructured(model: nn.Module, ratio: float) -> None:
    """Global magnitude pruning: zero the ``ratio`` fraction of all prunable weights with the
    smallest |w| (already-pruned weights count as removed first)."""
    layers = prunable_layers(model)
    weights = [effective(m, "weight") for m in layers]
    scores = torch.cat([w.abs().flatten() for w in weights])
    alive = torch.cat([(getattr(m, "weight_mask", torch.ones_like(w)) > 0).flatten() for m, w in zip(layers, weights)])
    scores = torch.where(alive, scores, torch.full_like(scores, -1.0))  # removed weights stay removed
    k = round(ratio * scores.numel())
    keep = torch.ones_like(scores)
    if k > 0:
        keep[torch.topk(scores, k, largest=False).indices] = 0.0
    for m, chunk in zip(layers, keep.split([w.numel() for w in weights])):
        _set_mask(m, "weight", chunk.view_as(m.weight))


def _removed_weight_fraction(widths: Sequence[int], layers: Sequence[nn.Linear], fraction: float) -> float:
    kept = [w - round(fraction * w) for w in widths]  # hidden neurons kept per layer
    sizes = [layers[0].in_features, *kept, layers[-1].out_features]
    total = sum(m.weight.numel() for m in layers)
    return 1.0 - sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) / total


def prune_structured(model: nn.Module, ratio: float) -> None:
    """ℓ1 neuron pruning with the same neuron fraction in every hidden layer, the smallest
    fraction that removes at least ``ratio`` of the prunable weights. Neurons are ranked by the
    ℓ1 norm of their (effective) incoming weights; a removed neuron's incoming row, bias, time
    gate and shift and the next layer's column are masked."""
    layers = prunable_layers(model)
    if len(layers) < 2:
        raise ValueError("structured pruning needs at least one hidden layer")
    widths = [m.out_features for m in layers[:-1]]
    lo, hi = 0.0, 1.0  # bisection on the neuron fraction
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _removed_weight_fraction(widths, layers, mid) < ratio else (lo, mid)
    fraction = hi if ratio > 0 else 0.0
    for layer, following in zip(layers[:-1], layers[1:]):
        weight = effective(layer, "weight")
        row_alive = getattr(layer, "weight_mask", torch.ones_like(weight)).sum(1) > 0
        scores = torch.where(row_alive, weight.abs().sum(1), torch.full_like(row_alive, -1.0, dtype=weight.dtype))
        keep = torch.ones(layer.out_features)
        k = round(fraction * layer.out_features)
        if k > 0:
            keep[torch.topk(scores, k, largest=False).indices] = 0.0
        _set_mask(layer, "weight", keep[:, None].expand_as(layer.weight))
        if layer.bias is not None:
            _set_mask(layer, "bias", keep)
        owner = _owner(model, layer)
        if owner is not None:
            _set_mask(owner.gate, "weight", keep[:, None].expand_as(owner.gate.weight))
            _set_mask(owner.gate, "bias", keep)
            _set_mask(owner.shift, "weight", keep[:, None].expand_as(owner.shift.weight))
        _set_mask(following, "weight", keep[None, :].expand_as(following.weight))


def prune_model(model: nn.Module, ratio: float, method: str = "unstructured") -> nn.Module:
    """Prune ``model`` in place to an overall ``ratio`` (0 <= ratio < 1) of its prunable weights
    removed, by ``method`` in ``METHODS``. Masks accumulate: calling with growing ratios is the
    iterative schedule. Returns ``model``."""
    check_choice("pruning method", method, METHODS)
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"ratio must be in [0, 1), got {ratio}")
    (prune_unstructured if method == "unstructured" else prune_structured)(model, ratio)
    return model


# -- counting, saving, loading ---------------------------------------------------------------------
@dataclass(frozen=True)
class ParameterCount:
    """Parameters of a model: ``total`` (dense), ``remaining`` (unmasked), and the same two for the
    prunable weights only; ``ratio`` = removed fraction of the prunable weights."""

    total: int
    remaining: int
    prunable: int
    prunable_remaining: int

    @property
    def ratio(self) -> float:
        return 1.0 - self.prunable_remaining / self.prunable


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count the real remaining parameters: masked entries of pruned tensors do not count."""
    total = remaining = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            base = name[: -len("_orig")] if name.endswith("_orig") else name
            mask = getattr(module, f"{base}_mask", None)
            total += p.numel()
            remaining += int(mask.sum()) if mask is not None else p.numel()
    layers = prunable_layers(model)
    prunable = sum(m.weight.numel() for m in layers)
    prunable_remaining = sum(int(getattr(m, "weight_mask", torch.ones_like(m.weight)).sum()) for m in layers)
    return ParameterCount(total, remaining, prunable, prunable_remaining)


def restore_masks(model: nn.Module, state_dict: dict[str, Tensor]) -> nn.Module:
    """Re-apply the masks found in ``state_dict`` (keys ``..._mask``) to a freshly built ``model``
    and load the state: the inverse of ``model.state_dict()`` for pruned models. Returns ``model``."""
    modules = dict(model.named_modules())
    for key, mask in state_dict.items():
        if key.endswith("_mask"):
            path, _, name = key[: -len("_mask")].rpartition(".")
            _set_mask(modules[path], name, mask)
    model.load_state_dict(state_dict)
    return model


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of a (possibly pruned) model with its masks. ``copy.deepcopy`` alone fails
    after a forward pass, because the pruned tensors (``orig * mask``) are then graph outputs."""
    for module in model.modules():
        for name in [n[: -len("_mask")] for n, _ in module.named_buffers(recurse=False) if n.endswith("_mask")]:
            setattr(module, name, effective(module, name))  # recomputed by the mask hook on every forward
    return copy.deepcopy(model)


# -- the iterative prune-retrain schedule ---------------------------------------------------------------
@dataclass
class PruneSweep:
    """Result of :func:`prune_retrain`: one row per prune ratio in ``table`` (ratio, parameters,
    training time and the ``evaluate`` metrics), the trained ``models`` by ratio, and each
    stage's training ``histories``."""

    method: str
    table: pd.DataFrame
    models: dict[float, nn.Module] = field(default_factory=dict)
    histories: dict[float, pd.DataFrame] = field(default_factory=dict)


def stage_checkpoint(path: Union[str, Path], label: str) -> Path:
    """The checkpoint of one stage of :func:`prune_retrain`: ``run.pt`` -> ``run-dense.pt``, ``run-pruned0.5.pt``."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{label}{path.suffix}")


def prune_retrain(model: nn.Module, data: Tensor, ratios: Sequence[float], *, method: str = "unstructured",
                  train_steps: int, retrain_steps: Optional[int] = None,
                  evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None,
                  dense: Optional[nn.Module] = None, **fit_kwargs: Any) -> PruneSweep:
    """Train ``model`` densely, then for each ratio in increasing order prune to it and retrain.

    Each retraining is a fresh :func:`cnflib.core.train.fit` call with the same optimizer settings and
    ``lr_schedule`` (``fit_kwargs``), i.e. the schedule is replayed from its start, as in the paper.

    Arguments:
        model: the model to train and prune in place (its final state is the largest ratio).
        data: training points [N, ...].
        ratios: prune ratios in (0, 1), increasing.
        method: "unstructured" or "structured".
        train_steps, retrain_steps: steps of the dense training and of each retraining
            (default: ``train_steps``).
        evaluate: ``evaluate(model) -> metrics`` run after each stage (e.g. test NLL).
        dense: an already trained dense model to start from (its copy is pruned); then ``model``
            is ignored and no dense training happens, so several criteria can share one dense run.
        fit_kwargs: passed to :func:`~cnflib.core.train.fit` (batch_size, lr, lr_schedule, seed, ...).
            A ``checkpoint`` path ``<dir>/<name><.ext>`` gives each stage its own file,
            ``<name>-dense<.ext>`` and ``<name>-pruned<ratio><.ext>`` (see :func:`stage_checkpoint`).

    Returns:
        A :class:`PruneSweep` whose table has a row for ratio 0 (dense) and every ratio.
    """
    check_choice("pruning method", method, METHODS)
    ratios = [float(r) for r in ratios]
    if ratios != sorted(ratios) or any(not 0.0 < r < 1.0 for r in ratios):
        raise ValueError(f"ratios must be increasing and in (0, 1), got {ratios}")
    fit_kwargs.setdefault("progress", False)
    checkpoint = fit_kwargs.pop("checkpoint", None)

    def stage(label: str) -> dict[str, Any]:
        return {**fit_kwargs, "checkpoint": stage_checkpoint(checkpoint, label)} if checkpoint else fit_kwargs
    sweep = PruneSweep(method, pd.DataFrame())
    rows = []

    def record(ratio: float, history: pd.DataFrame) -> None:
        count = count_parameters(model)
        seconds = float(history["seconds"].iloc[-1]) if len(history) else float("nan")
        row = {"ratio": ratio, "measured_ratio": count.ratio, "params": count.remaining,
               "prunable_params": count.prunable_remaining, "train_seconds": seconds,
               "s_per_iter": seconds / max(len(history), 1)}
        if evaluate is not None:
            model.eval()
            with torch.no_grad():
                row.update(evaluate(model))
            model.train()
        rows.append(row)
        sweep.models[ratio] = clone(model)
        sweep.histories[ratio] = history

    if dense is not None:
        model = clone(dense)
        record(0.0, pd.DataFrame({"seconds": []}))
    else:
        record(0.0, fit(model, data, steps=train_steps, desc=f"{method} dense", **stage("dense")))
    for ratio in ratios:
        prune_model(model, ratio, method)
        record(ratio, fit(model, data, steps=retrain_steps or train_steps, desc=f"{method} {ratio:.0%}",
                          **stage(f"pruned{ratio:g}")))
    sweep.table = pd.DataFrame(rows).set_index("ratio")
    return sweep
