"""FFJORD training on 8gaussians: exact vs Hutchinson trace, adjoint vs autograd, in one run.

Settings are those of rtqichen/ffjord's ``train_toy.py`` (concatsquash 64-64-64, tanh, T=0.5,
dopri5 atol=rtol=1e-5, batch 100, Adam 1e-3), whose reference figures on this 2-core machine are
0.17-0.21 s/iteration and test NLL 3.02-3.06 nats after 1,000 iterations (exact trace, adjoint).

Each variant runs in a fresh process, so its peak memory (max RSS above the level reached before
training) is its own. Prints one table.

    python benchmarks/cnf_training.py                     # 300 iterations per variant
    python benchmarks/cnf_training.py --iterations 1000   # the reference's length
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import time

VARIANTS = [("exact", "adjoint"), ("exact", "autograd"), ("hutchinson", "adjoint"), ("hutchinson", "autograd")]


def run_variant(trace: str, sensitivity: str, iterations: int, seed: int, queue: mp.Queue) -> None:
    import torch

    from cnflib.data import toy
    from cnflib.core import CNF, ConcatSquashMLP
    from cnflib.core.train import fit

    torch.manual_seed(seed)
    train, test = toy.splits("8gaussians", 20_000, 5_000, seed=seed)
    cnf = CNF(ConcatSquashMLP(2, (64, 64, 64), "tanh"), trace=trace, sensitivity=sensitivity, T=0.5,
              solver="dopri5", atol=1e-5, rtol=1e-5)
    base_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    history = fit(cnf, train, steps=iterations, batch_size=100, lr=1e-3, seed=seed, progress=False)
    peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base_kb) / 1024
    start = time.perf_counter()
    with torch.no_grad(), cnf.trace_estimator("exact"):  # exact likelihood for every variant
        nll = -cnf.log_prob(test).mean().item()
    tail = history.iloc[-max(1, iterations // 10):]
    queue.put({"trace": trace, "sensitivity": sensitivity, "s/iter": history["seconds"].iloc[-1] / iterations,
               "nfe_fwd": tail["nfe_forward"].mean(), "nfe_bwd": tail["nfe_backward"].mean(),
               "peak_MB": peak_mb, "test_nll": nll, "eval_s": time.perf_counter() - start})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    rows = []
    for trace, sensitivity in VARIANTS:
        queue = ctx.Queue()
        proc = ctx.Process(target=run_variant, args=(trace, sensitivity, args.iterations, args.seed, queue))
        proc.start()
        rows.append(queue.get())
        proc.join()
        print(f"done: {trace}/{sensitivity}", flush=True)
    print(f"\n8gaussians, {args.iterations} iterations, batch 100, dopri5 1e-5 (NFE: mean of the last 10%)")
    print(f"{'trace':<11}{'sensitivity':<12}{'s/iter':>8}{'NFE fwd':>9}{'NFE bwd':>9}{'peak MB':>9}{'test NLL':>10}")
    for r in rows:
        print(f"{r['trace']:<11}{r['sensitivity']:<12}{r['s/iter']:>8.3f}{r['nfe_fwd']:>9.1f}{r['nfe_bwd']:>9.1f}"
              f"{r['peak_MB']:>9.0f}{r['test_nll']:>10.3f}")
    ref = rows[0]["s/iter"]
    print("\nspeed-up over exact/adjoint: " + ", ".join(f"{r['trace']}/{r['sensitivity']} {ref / r['s/iter']:.2f}x" for r in rows))


if __name__ == "__main__":
    main()
