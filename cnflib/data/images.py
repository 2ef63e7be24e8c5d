"""Image data for the image flows: scikit-learn's 8x8 digits (ships with scikit-learn, no download).

Images are kept as integer levels; a flow sees them through :func:`dequantize` (uniform noise,
scaled into [0, 1)) and usually :func:`logit_transform`. Likelihoods of discrete images are
reported in bits per dimension with :func:`bits_per_dim`, which accounts for the scaling, so
that the figure is that of the discrete data (Theis et al. 2016; FFJORD and Glow report it so).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from cnflib._validation import check_choice

SPLITS: tuple[str, ...] = ("train", "validation", "test")


@dataclass(frozen=True)
class ImageSplit:
    """Images as integer levels ``x`` uint8 [n, C, H, W] in ``[0, levels)``, labels ``y`` long [n]."""

    x: Tensor
    y: Tensor
    levels: int

    @property
    def event_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``."""
        return tuple(self.x.shape[1:])  # type: ignore[return-value]

    @property
    def n_classes(self) -> int:
        return int(self.y.max()) + 1

    def __len__(self) -> int:
        return len(self.x)


def digits(split: str = "train", *, validation_fraction: float = 0.1, test_fraction: float = 0.2,
           seed: int = 0) -> ImageSplit:
    """scikit-learn's 8x8 digits (1,797 images, 10 classes, 17 grey levels 0..16) as ``[n, 1, 8, 8]``.

    The split is stratified by class and fixed by ``seed``: ``test_fraction`` of each class is
    test, ``validation_fraction`` validation, the rest train.
    """
    check_choice("split", split, SPLITS)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.as_tensor(bunch.images, dtype=torch.uint8).unsqueeze(1)
    y = torch.as_tensor(bunch.target, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    parts: dict[str, list[Tensor]] = {name: [] for name in SPLITS}
    for label in range(10):
        index = torch.nonzero(y == label).flatten()
        index = index[torch.randperm(len(index), generator=generator)]
        n_test = round(test_fraction * len(index))
        n_val = round(validation_fraction * len(index))
        parts["test"].append(index[:n_test])
        parts["validation"].append(index[n_test:n_test + n_val])
        parts["train"].append(index[n_test + n_val:])
    index = torch.cat(parts[split]).sort().values
    return ImageSplit(x=x[index], y=y[index], levels=17)


def dequantize(x: Tensor, levels: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform dequantization: integer levels x [...] -> ``(x + u) / levels`` in [0, 1), u ~ U[0, 1)."""
    noise = torch.rand(x.shape, generator=generator, device=x.device)
    return (x.float() + noise) / levels


def logit_transform(x: Tensor, alpha: float = 0.05) -> tuple[Tensor, Tensor]:
    """``y = logit(alpha + (1 - 2 alpha) x)`` for x [n, ...] in [0, 1], and log|dy/dx| summed per sample [n].

    ``alpha`` keeps the logit away from 0 and 1 (RealNVP uses 0.05, FFJORD 1e-6).
    """
    s = alpha + (1 - 2 * alpha) * x
    y = torch.log(s) - torch.log1p(-s)
    log_det = math.log(1 - 2 * alpha) - torch.log(s) - torch.log1p(-s)
    return y, log_det.flatten(1).sum(1)


def bits_per_dim(nll_nats: Tensor, dims: int, levels: int) -> Tensor:
    """Bits per dimension of the discrete images, from the NLL [n] in nats of their ``[0, 1)`` scaling.

    Scaling levels into [0, 1) divides by ``levels`` per dimension, so the discrete NLL is
    ``nll + dims * log(levels)``.
    """
    return (nll_nats + dims * math.log(levels)) / (dims * math.log(2))
