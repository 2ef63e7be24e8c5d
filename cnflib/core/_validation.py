"""Small argument checks that give users clear errors."""
from __future__ import annotations

from typing import Iterable, TypeVar

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
