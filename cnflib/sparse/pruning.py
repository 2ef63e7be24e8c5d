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
learning-rate schedule replayed from its start; with ``matched_control=True`` it also trains, at
every ratio, a dense control for exactly the same cumulative steps and schedule, so that pruning is
compared with equal training rather than with the (less trained) dense starting point.
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
    stage's training ``histories``. With ``matched_control``: the dense ``controls`` by ratio (the
    dense model itself at ratio 0), their ``control_histories``, and in ``table`` the columns
    ``steps`` (cumulative training steps after the dense stage, the same for a pruned flow and its
    control), ``control_<metric>`` and ``control_train_seconds``."""

    method: str
    table: pd.DataFrame
    models: dict[float, nn.Module] = field(default_factory=dict)
    histories: dict[float, pd.DataFrame] = field(default_factory=dict)
    controls: dict[float, nn.Module] = field(default_factory=dict)
    control_histories: dict[float, pd.DataFrame] = field(default_factory=dict)


def stage_checkpoint(path: Union[str, Path], label: str) -> Path:
    """The checkpoint of one stage of :func:`prune_retrain`: ``run.pt`` -> ``run-dense.pt``, ``run-pruned0.5.pt``,
    ``run-control0.5.pt`` (the matched dense control of ratio 0.5)."""
    path = Path(path)
    return path.with_name(f"{path.stem}-{label}{path.suffix}")


def effective_parameters(model: nn.Module) -> dict[str, Tensor]:
    """Every parameter as the model computes with it (``orig * mask`` for pruned ones), by dotted name."""
    out = {}
    for path, module in model.named_modules():
        for name, _ in module.named_parameters(recurse=False):
            base = name.removesuffix("_orig")
            out[f"{path}.{base}" if path else base] = effective(module, base)
    return out


def _same_state(a: nn.Module, b: nn.Module) -> bool:
    """Whether two (possibly differently masked) models compute with the same parameters."""
    sa, sb = effective_parameters(a), effective_parameters(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def prune_retrain(model: Optional[nn.Module], data: Tensor, ratios: Sequence[float], *, method: str = "unstructured",
                  train_steps: int, retrain_steps: Optional[int] = None,
                  evaluate: Optional[Callable[[nn.Module], dict[str, float]]] = None,
                  dense: Optional[nn.Module] = None, matched_control: bool = False,
                  controls_from: Optional[PruneSweep] = None, **fit_kwargs: Any) -> PruneSweep:
    """Train ``model`` densely, then for each ratio in increasing order prune to it and retrain.

    Each retraining is a fresh :func:`cnflib.core.train.fit` call with the same optimizer settings and
    ``lr_schedule`` (``fit_kwargs``), i.e. the schedule is replayed from its start, as in the paper.
    After the i-th ratio the pruned flow has been trained ``train_steps + i · retrain_steps`` steps.

    With ``matched_control``, a dense copy of the dense model is trained alongside: at the i-th ratio
    it has had exactly the same stages (the dense training, then i retrainings of ``retrain_steps``
    steps, each a fresh ``fit`` with the same ``fit_kwargs``: same schedule replayed, same seed, hence
    the same minibatches), without pruning. The pruned-vs-control difference at a ratio is then the
    effect of pruning at equal training; against the dense row it mixes in the extra training.
    The control carries all-ones masks on the tensors ``method`` prunes (it is dense: ratio 0), so that
    it computes with the same arithmetic; at a ratio that removes no weight (unstructured, e.g. 1e-9)
    a pruned flow and its control end bit for bit identical. (Structured pruning at any ratio > 0
    removes at least one neuron per hidden layer.)

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
        matched_control: also train the matched dense control at every ratio (default False: as before,
            no control, and the table has no ``steps`` / ``control_*`` columns).
        controls_from: a sweep with ``matched_control`` from the same dense model and ratios (e.g. the
            other criterion's): its controls are reused instead of retrained (implies ``matched_control``);
            the control depends on the dense model, the ratios' count and ``fit_kwargs``, not on the criterion
            (up to the last bit: its masks are those of the sweep it was trained in).
        fit_kwargs: passed to :func:`~cnflib.core.train.fit` (batch_size, lr, lr_schedule, seed, ...).
            A ``checkpoint`` path ``<dir>/<name><.ext>`` gives each stage its own file,
            ``<name>-dense<.ext>``, ``<name>-pruned<ratio><.ext>`` and ``<name>-control<ratio><.ext>``
            (see :func:`stage_checkpoint`).

    Returns:
        A :class:`PruneSweep` whose table has a row for ratio 0 (dense) and every ratio.

    Raises:
        ValueError: bad ratios or method, or ``controls_from`` does not match (ratios, dense model, steps).
    """
    check_choice("pruning method", method, METHODS)
    ratios = [float(r) for r in ratios]
    if ratios != sorted(ratios) or any(not 0.0 < r < 1.0 for r in ratios):
        raise ValueError(f"ratios must be increasing and in (0, 1), got {ratios}")
    retrain_steps = retrain_steps or train_steps
    matched_control = matched_control or controls_from is not None
    if controls_from is not None:
        if not controls_from.controls or sorted(controls_from.controls) != [0.0, *ratios]:
            raise ValueError(f"controls_from must hold matched controls for ratios {ratios}, it has "
                             f"{sorted(controls_from.controls)}: run it with matched_control=True and the same ratios")
        if dense is None or not _same_state(dense, controls_from.controls[0.0]):
            raise ValueError("controls_from needs the same dense model: pass its dense model as dense=...")
        if list(controls_from.table["steps"]) != [i * retrain_steps for i in range(len(ratios) + 1)]:
            raise ValueError(f"controls_from was trained with other retrain_steps than {retrain_steps}")
    fit_kwargs.setdefault("progress", False)
    checkpoint = fit_kwargs.pop("checkpoint", None)

    def stage(label: str) -> dict[str, Any]:
        return {**fit_kwargs, "checkpoint": stage_checkpoint(checkpoint, label)} if checkpoint else fit_kwargs

    def measure(m: nn.Module) -> dict[str, float]:
        if evaluate is None:
            return {}
        m.eval()
        with torch.no_grad():
            out = evaluate(m)
        m.train()
        return out

    sweep = PruneSweep(method, pd.DataFrame())
    rows = []

    def record(ratio: float, history: pd.DataFrame) -> tuple[dict[str, Any], dict[str, float]]:
        count = count_parameters(model)
        seconds = float(history["seconds"].iloc[-1]) if len(history) else float("nan")
        row = {"ratio": ratio, "measured_ratio": count.ratio, "params": count.remaining,
               "prunable_params": count.prunable_remaining, "train_seconds": seconds,
               "s_per_iter": seconds / max(len(history), 1)}
        metrics = measure(model)
        row.update(metrics)
        rows.append(row)
        sweep.models[ratio] = clone(model)
        sweep.histories[ratio] = history
        return row, metrics

    def record_control(row: dict[str, Any], step: int, control: nn.Module, history: pd.DataFrame,
                       metrics: Optional[dict[str, float]] = None) -> None:
        row["steps"] = step * retrain_steps
        ratio = row["ratio"]
        if controls_from is not None:
            source = controls_from.table.loc[ratio]
            row.update({key: source[key] for key in controls_from.table.columns if key.startswith("control_")})
        else:
            row["control_train_seconds"] = float(history["seconds"].iloc[-1]) if len(history) else float("nan")
            values = measure(control) if metrics is None else metrics
            row.update({f"control_{key}": value for key, value in values.items()})
        sweep.controls[ratio] = clone(control)
        sweep.control_histories[ratio] = history

    if dense is not None:
        model = clone(dense)
        row, metrics = record(0.0, pd.DataFrame({"seconds": []}))
    else:
        row, metrics = record(0.0, fit(model, data, steps=train_steps, desc=f"{method} dense", **stage("dense")))
    control: Optional[nn.Module] = None
    if matched_control:  # at ratio 0 the control is the dense model itself
        # all-ones masks on the tensors the method prunes: torch's pruning recomputes weight = orig · mask at
        # every call, which sums gradients in another order (last-bit differences); with the same masks the
        # control computes exactly as the pruned flow does, and equals it where pruning removes nothing
        control = prune_model(clone(model), 0.0, method)
        record_control(row, 0, control, sweep.histories[0.0], metrics)
    for step, ratio in enumerate(ratios, start=1):
        prune_model(model, ratio, method)
        row, _ = record(ratio, fit(model, data, steps=retrain_steps, desc=f"{method} {ratio:.0%}",
                                   **stage(f"pruned{ratio:g}")))
        if control is None:
            continue
        if controls_from is not None:
            control = controls_from.controls[ratio]
            record_control(row, step, control, controls_from.control_histories[ratio])
        else:
            history = fit(control, data, steps=retrain_steps, desc=f"dense control {ratio:.0%}",
                          **stage(f"control{ratio:g}"))
            record_control(row, step, control, history)
    sweep.table = pd.DataFrame(rows).set_index("ratio")
    return sweep
