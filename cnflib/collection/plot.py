"""Plots shared by the notebooks: densities on a grid, samples, trajectories, vector fields, intervals."""
from __future__ import annotations

from typing import Any, Callable, Optional, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

Bounds = tuple[float, float]


def use_notebook_style(dpi: int = 80) -> None:
    """Small PNG figures (notebooks stay light) in a clean seaborn style, shown inline in Jupyter
    even when ``MPLBACKEND`` says otherwise (headless runs set it to Agg)."""
    import seaborn as sns
    from IPython import get_ipython

    shell = get_ipython()
    if shell is not None and "inline" not in plt.get_backend():
        shell.run_line_magic("matplotlib", "inline")

    sns.set_theme(style="whitegrid", context="notebook", font_scale=0.9)
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "figure.figsize": (6, 3.5), "image.cmap": "viridis"})


def grid(bounds: Bounds = (-4.0, 4.0), n: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """An n x n grid over the square ``bounds``: (points [n*n, 2], xx [n, n], yy [n, n])."""
    axis = torch.linspace(bounds[0], bounds[1], n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1), xx, yy


@torch.no_grad()
def density_on_grid(log_prob: Callable[[Tensor], Tensor], bounds: Bounds = (-4.0, 4.0), n: int = 100,
                    chunk: int = 2500) -> tuple[Tensor, Tensor, Tensor]:
    """Evaluate ``exp(log_prob)`` on a grid: (density [n, n], xx, yy)."""
    points, xx, yy = grid(bounds, n)
    logp = torch.cat([log_prob(p) for p in points.split(chunk)])
    return logp.exp().reshape(n, n), xx, yy


def plot_density(ax: plt.Axes, log_prob: Callable[[Tensor], Tensor], bounds: Bounds = (-4.0, 4.0), n: int = 100,
                 title: Optional[str] = None) -> Tensor:
    """Heatmap of a 2-D density; returns the density grid [n, n]."""
    density, _, _ = density_on_grid(log_prob, bounds, n)
    ax.imshow(density.numpy(), origin="lower", extent=(*bounds, *bounds), interpolation="nearest")
    _finish(ax, bounds, title)
    return density


def plot_samples(ax: plt.Axes, x: Tensor, bounds: Bounds = (-4.0, 4.0), bins: int = 100,
                 title: Optional[str] = None) -> None:
    """2-D histogram of samples x: [n, 2]."""
    x = x.detach().cpu().numpy()
    ax.hist2d(x[:, 0], x[:, 1], bins=bins, range=[bounds, bounds])
    _finish(ax, bounds, title)


def plot_trajectories(ax: plt.Axes, trajectory: Tensor, bounds: Optional[Bounds] = None, n_paths: int = 100,
                      title: Optional[str] = None, color: str = "C0") -> None:
    """Particle paths of a flow. trajectory: [T, n, 2]; start points black, end points red."""
    traj = trajectory.detach().cpu().numpy()[:, :n_paths]
    ax.plot(traj[:, :, 0], traj[:, :, 1], color=color, alpha=0.35, lw=0.8)
    ax.scatter(traj[0, :, 0], traj[0, :, 1], s=4, c="black", zorder=3)
    ax.scatter(traj[-1, :, 0], traj[-1, :, 1], s=4, c="crimson", zorder=3)
    _finish(ax, bounds, title)


@torch.no_grad()
def plot_vector_field(ax: plt.Axes, field: Callable[[Tensor, Tensor], Tensor], t: float = 0.0,
                      bounds: Bounds = (-4.0, 4.0), n: int = 20, title: Optional[str] = None) -> None:
    """Quiver plot of ``field(t, z)`` on an n x n grid (arrows normalized, colour = speed)."""
    points, xx, yy = grid(bounds, n)
    v = field(torch.tensor(float(t)), points)
    speed = v.norm(dim=1).clamp_min(1e-12)
    u = (v / speed[:, None]).numpy()
    ax.quiver(xx.numpy(), yy.numpy(), u[:, 0].reshape(n, n), u[:, 1].reshape(n, n), speed.reshape(n, n).numpy(),
              cmap="magma", scale=n * 1.3, width=0.004)
    _finish(ax, bounds, title)


def plot_curves(ax: plt.Axes, curves: dict[str, Sequence[float]], x: Optional[Sequence[float]] = None,
                xlabel: str = "step", ylabel: str = "", title: Optional[str] = None, logy: bool = False) -> None:
    """Several named curves on one axis (e.g. histories' columns)."""
    for name, values in curves.items():
        values = np.asarray(values, dtype=float)
        ax.plot(np.arange(1, len(values) + 1) if x is None else x, values, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend(frameon=False)


def plot_intervals(ax: plt.Axes, x: Sequence[float], centre: Sequence[float], low: Sequence[float],
                   high: Sequence[float], **errorbar: Any) -> None:
    """Points ``centre`` [n] at ``x`` [n] with the interval ``[low, high]`` [n] as an asymmetric error bar.

    For a bootstrap interval around a median (:func:`cnflib.collection.stats.paired_summary`'s
    ``median``, ``median_low``, ``median_high``) or a spread around a mean; ``errorbar`` goes to
    :meth:`matplotlib.axes.Axes.errorbar` (defaults ``fmt="o"``, ``capsize=3``).
    """
    centre, low, high = (np.atleast_1d(np.asarray(v, dtype=float)) for v in (centre, low, high))
    if np.any(low > centre) or np.any(high < centre):
        raise ValueError("each interval must contain its centre (low <= centre <= high); were low and high swapped?")
    ax.errorbar(np.atleast_1d(np.asarray(x, dtype=float)), centre, yerr=[centre - low, high - centre],
                **{"fmt": "o", "capsize": 3, **errorbar})


def _finish(ax: plt.Axes, bounds: Optional[Bounds], title: Optional[str]) -> None:
    if bounds is not None:
        ax.set_xlim(*bounds)
        ax.set_ylim(*bounds)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    if title:
        ax.set_title(title)
