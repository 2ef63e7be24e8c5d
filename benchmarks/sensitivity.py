"""Adjoint vs backpropagation through the solver: time, memory, NFE and gradient agreement.

For each tolerance and sensitivity, one gradient of ``mean ||x(T)||^2`` through a ``dopri5`` solve of a random
time-dependent MLP field (hidden 64-64, weights x3) on a batch of 2-D points:

* ``s/grad``: median wall time of forward + backward over ``--repeats`` runs;
* ``nfe_f`` / ``nfe_b``: function evaluations of the forward and the backward (adjoint) solve;
* ``graph_MiB``: peak bytes held by autograd graphs (``cnflib.models.node.SavedTensorMeter``);
* ``rss_MiB``: peak RSS during one gradient minus the RSS before it (Linux ``VmHWM`` after resetting it
  through ``/proc/self/clear_refs``), each in a fresh process: an independent, coarser check that also sees
  allocator effects and non-graph temporaries;
* ``rel_diff``: ``||g - g_autograd|| / ||g_autograd||`` at the same tolerance.

Run: ``python benchmarks/sensitivity.py`` (about 50 s of CPU time, one thread; longer on a shared machine);
``--help`` for options.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

import torch

from cnflib.models.node import gradient_cost
from cnflib.core.vector_fields import TimeConcatMLP
from cnflib.core.odes import BudgetedField, neural_ode, solve

SENSITIVITIES = ("autograd", "adjoint")


def problem(batch: int, seed: int) -> tuple[TimeConcatMLP, torch.Tensor]:
    """The random field (PyTorch's default init x3) and a batch of standard normal points [batch, 2]."""
    torch.manual_seed(seed)
    field = TimeConcatMLP(2, (64, 64), "tanh")
    with torch.no_grad():
        for p in field.parameters():
            p.mul_(3.0)
    return field, torch.randn(batch, 2)


def loss_fn(field: TimeConcatMLP, x: torch.Tensor, sensitivity: str, tol: float):
    counted = BudgetedField(field)
    ode = neural_ode(counted, "dopri5", atol=tol, rtol=tol, sensitivity=sensitivity)
    t_span = torch.tensor([0.0, 1.0])
    return counted, lambda: solve(ode, counted, x, t_span)[-1].pow(2).sum(1).mean()


def _status_mib(key: str) -> float:
    """A memory line of /proc/self/status (Linux), in MiB."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(key + ":"))
    return int(line.split()[1]) / 1024  # the kernel reports KiB


def rss_worker(args: argparse.Namespace) -> None:
    """In a fresh process: max-RSS increase (MiB) of one gradient, printed as JSON."""
    field, x = problem(args.batch, args.seed)
    counted, loss = loss_fn(field, x, args.worker, args.worker_tol)
    with torch.no_grad():
        loss()  # warm up (allocator, lazy imports) without a graph
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
    before = _status_mib("VmRSS")
    torch.autograd.grad(loss(), list(field.parameters()))
    print(json.dumps({"rss_MiB": _status_mib("VmHWM") - before}))


def rss_in_fresh_process(args: argparse.Namespace, sensitivity: str, tol: float) -> float:
    cmd = [sys.executable, __file__, "--worker", sensitivity, "--worker-tol", repr(tol),
           "--batch", str(args.batch), "--seed", str(args.seed)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["rss_MiB"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2048)
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-3, 1e-5, 1e-7])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--worker", choices=SENSITIVITIES, help=argparse.SUPPRESS)
    parser.add_argument("--worker-tol", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        rss_worker(args)
        return

    field, x = problem(args.batch, args.seed)
    print(f"dopri5, batch {args.batch}, TimeConcatMLP 2-64-64-2 (x3 init), {args.threads} thread(s), "
          f"torch {torch.__version__}")
    header = f"{'tol':>7} {'sensitivity':>11} {'s/grad':>8} {'nfe_f':>6} {'nfe_b':>6} {'graph_MiB':>10} {'rss_MiB':>8} {'rel_diff':>9}"
    print(header)
    print("-" * len(header))
    for tol in args.tolerances:
        reference = None
        for sensitivity in SENSITIVITIES:
            counted, loss = loss_fn(field, x, sensitivity, tol)
            cost = gradient_cost(loss, field.parameters(), repeats=args.repeats)
            reference = cost.gradient if reference is None else reference
            rel = ((cost.gradient - reference).norm() / reference.norm()).item()
            rss = rss_in_fresh_process(args, sensitivity, tol)
            print(f"{tol:7.0e} {sensitivity:>11} {cost.seconds:8.4f} {counted.nfe_forward:6d} {counted.nfe_backward:6d} "
                  f"{cost.saved_bytes / 2**20:10.2f} {rss:8.1f} {rel:9.2e}")


if __name__ == "__main__":
    main()
