"""Small argument checks that give users clear errors, called once at each entry point.

Every message names the argument, the value received, the valid range and the fix.
"""
from __future__ import annotations

import math
import numbers
from typing import Iterable, Optional, TypeVar

import torch
from torch import Tensor

T = TypeVar("T")


def check_choice(kind: str, value: str, valid: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``valid``; else raise a ValueError listing the valid names.

    Example: ``check_choice("solver", "dopri", SOLVERS)`` raises
    ``ValueError: unknown solver 'dopri'; valid: dopri5, euler, ...``.
    """
    valid = list(valid)
    if value not in valid:
        raise ValueError(f"unknown {kind} {value!r}; valid: {', '.join(map(str, valid))}")
    return value


def check_positive(name: str, value: float, fix: str = "") -> float:
    """Return ``float(value)`` if it is a finite number > 0; else a ValueError naming ``name``.

    Example: ``check_positive("atol", -1e-5)`` raises
    ``ValueError: atol must be a finite number > 0, got -1e-05``.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and number > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}" + (f": {fix}" if fix else ""))
    return number


def check_count(name: str, value: int, low: int = 1) -> int:
    """Return ``value`` if it is an integer >= ``low``; else a ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_time(T: float) -> float:
    """A CNF's integration time as a float if it is finite and > 0; else ValueError.

    Reversed spans (T < 0) are refused rather than supported: torchdyn's adjoint gives wrong
    gradients on them, and a flow over [0, -T] is the same model family with the field negated.
    """
    return check_positive("T", T, "the flow maps data at t=0 to the latent at t=T > 0 (FFJORD Eq. 4); "
                          "for the reverse map use cnf.inverse(z) or cnf.sample(n)")


def check_batch(name: str, x: Tensor, event_shape: tuple[int, ...], dtype: Optional[torch.dtype]) -> None:
    """Check a batch ``x`` [n, *event_shape] given to a flow: a floating tensor of the model's
    ``dtype`` with finite values. An empty batch (n = 0) passes (the flow returns empty results).

    Raises TypeError (not a tensor, wrong dtype) or ValueError (shape, NaN/inf rows, naming them).
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape [n, {', '.join(map(str, event_shape))}], "
                        f"got {type(x).__name__}")
    if tuple(x.shape[1:]) != tuple(event_shape) or x.ndim != len(event_shape) + 1:
        shape = ", ".join(map(str, event_shape))
        hint = f" (one sample: {name}[None])" if tuple(x.shape) == tuple(event_shape) else ""
        raise ValueError(f"{name} must have shape [n, {shape}] (a batch of samples of shape ({shape},)), "
                         f"got {list(x.shape)}{hint}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a floating tensor, got {x.dtype}: convert it with {name}.float() "
                        "(images: dequantize first, cnflib.core.transforms)")
    if dtype is not None and x.dtype != dtype:
        raise TypeError(f"{name} is {x.dtype} but the model's parameters are {dtype}: convert one of them, "
                        f"e.g. {name}.to({dtype}) or model.to({x.dtype})")
    finite = torch.isfinite(x.flatten(1)).all(1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten().tolist()
        raise ValueError(f"{name} has NaN or inf values in {len(bad)} of {len(x)} rows (rows {bad[:10]}"
                         f"{', ...' if len(bad) > 10 else ''}): drop or repair them, e.g. "
                         f"{name}[torch.isfinite({name}).flatten(1).all(1)]")
