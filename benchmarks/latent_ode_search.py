"""Search for the partitioned Latent ODE's extrapolation gain at CPU size (notebook 05, issue 17).

One factor at a time around notebook 05's tutorial setting (shared placement, 600 spirals of which
240 test, 50-step windows of a 250-point path, 25-step horizon, latent 5, 500 steps), the baseline,
the partitioned model and its shuffled-label control are trained with one budget (the library's
defaults: GRU encoder, head on the posterior mean, weight 100) and compared on the same test spirals:
median per-spiral difference of extrapolation MSE (partitioned - baseline, and partitioned - shuffled)
with its bootstrap 95% interval, win share, the head's direction accuracy and the test R^2 of a and b
read linearly from z_y. Writes a CSV (data/latent_ode_search.csv).

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/latent_ode_search.py [--out data/latent_ode_search.csv] [--seed 0] [--start 0]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
import torch

from cnflib.collection.stats import linear_r2, paired_summary
from cnflib.data.timeseries import make_spirals, standardize_labels
from cnflib.infocnf.latent_ode import train_arm
from cnflib.models.latent_ode import trajectory_errors

DEFAULT = dict(steps=500, n_spirals=600, window=50, latent_dim=5)
SEARCH = [("default", {}), ("steps", {"steps": 1000}), ("n_spirals", {"n_spirals": 1200}),
          ("window", {"window": 25}), ("latent_dim", {"latent_dim": 8})]


def run_point(steps: int, n_spirals: int, window: int, latent_dim: int, seed: int = 0, n_total: int = 250,
              horizon: int = 25, lr: float = 1e-2, head_weight: float = 100.0, batch_size: int = 100) -> dict:
    """Train the baseline, the partitioned model and its shuffled-label control at one setting; the paired test statistics."""
    data = make_spirals(n_spirals, n_total, window, horizon, test_fraction=0.4, placement="shared",
                        generator=torch.Generator().manual_seed(seed))
    train, test = data.train, data.test
    y_train, y_test = standardize_labels(train.labels), standardize_labels(test.labels)
    errors, row = {}, {}
    for kind in ("baseline", "partitioned", "shuffled"):
        model, history = train_arm(kind, train.observed, y_train, data.t_observed, steps=steps, lr=lr,
                                   head_weight=head_weight, latent_dim=latent_dim, batch_size=batch_size,
                                   seed=seed, progress=False)
        errors[kind] = trajectory_errors(model, test.observed, data.t_observed, test.truth, data.t_future, test.future)
        row[f"{kind}_cpu_s"] = float(history["cpu_seconds"].iloc[-1])
        if kind == "partitioned":
            with torch.no_grad():
                q_train, q_test = model.encoder(train.observed)[0], model.encoder(test.observed)[0]
            row["r2_a"], row["r2_b"] = map(float, linear_r2(q_train[:, :3], y_train[:, :2], q_test[:, :3], y_test[:, :2]))
            row["head_direction_accuracy"] = model.direction_accuracy(test.observed, y_test)
    s = paired_summary(errors["partitioned"]["extrap_mse"].numpy(), errors["baseline"]["extrap_mse"].numpy())
    row.update({f"extrap_{k}": v for k, v in s.items()})
    v = paired_summary(errors["partitioned"]["extrap_mse"].numpy(), errors["shuffled"]["extrap_mse"].numpy())
    row.update({"vs_shuffled_median": v["median"], "vs_shuffled_low": v["median_low"], "vs_shuffled_high": v["median_high"]})
    r = paired_summary(errors["partitioned"]["recon_mse"].numpy(), errors["baseline"]["recon_mse"].numpy())
    row.update({"recon_median": r["median"], "recon_median_low": r["median_low"], "recon_median_high": r["median_high"]})
    return row


def main(out: str = "data/latent_ode_search.csv", seed: int = 0, start: int = 0) -> pd.DataFrame:
    """Run ``SEARCH[start:]``; with ``start > 0`` the rows are appended to those already in ``out``."""
    torch.set_num_threads(1)
    rows = pd.read_csv(out).to_dict("records") if start else []
    for factor, change in SEARCH[start:]:
        setting = {**DEFAULT, **change}
        start = time.perf_counter()
        row = {"factor": factor, **setting, "seed": seed, **run_point(**setting, seed=seed)}
        row["wall_s"] = time.perf_counter() - start
        rows.append(row)
        print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
        frame = pd.DataFrame(rows)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        frame.to_csv(out, index=False, float_format="%.5g")  # after every point: a partial search survives
    return frame


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/latent_ode_search.csv")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="skip the first points; append to --out")
    args = parser.parse_args()
    print(main(args.out, args.seed, args.start).round(4).to_string(index=False))
