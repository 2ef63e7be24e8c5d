"""FFJORD training speed on CPU, optionally side by side with the code at another git ref.

Two models:

* ``toy``: 8gaussians with the settings of rtqichen/ffjord's ``train_toy.py`` (concatsquash
  64-64-64, tanh, T=0.5, dopri5 atol=rtol=1e-5, batch 100, Adam 1e-3), whose reference figures on
  this 2-core machine are 0.17-0.21 s/iteration and test NLL 3.02-3.06 nats after 1,000
  iterations (exact trace, adjoint). Variants: exact or Hutchinson trace, adjoint or autograd.
* ``digits``: the multiscale CNF of notebook 04's tutorial preset on 8x8 digits (2 scales, one
  block per scale, conv 16-16 softplus, dopri5 1e-5, batch 64, Adam 3e-3), unconditional.

Every run is a fresh process (its own peak memory: max RSS above the level before training)
with ``--threads`` intra-op threads ("default": torch's own choice, the machine's cores); the
caller's ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are not passed on. Test NLL (nats; bits/dim for
digits) is always evaluated with the exact trace at the training tolerance.

``--compare REF`` checks REF out in a temporary ``git worktree`` and runs every (variant, seed)
on both trees in one session, alternating which goes first (``--concurrent``: both at the same
time), so that both see the same load; it prints per variant the means over seeds of seconds per
iteration (wall clock, and CPU time of the process: the steadier figure on a shared machine), ms
per function evaluation (training time / all forward and backward evaluations), NFE per iteration
(forward, backward; mean of the last 10%), peak memory, test NLL, and the ratios new/REF, with the load
(``uptime``) before and after.

    python benchmarks/cnf_training.py                                   # toy, 4 variants, 300 iterations
    python benchmarks/cnf_training.py --model digits --iterations 100
    python benchmarks/cnf_training.py --compare e710b3e --iterations 1000 --seeds 0 1 2 \\
        --variants exact/adjoint hutchinson/adjoint --threads 1 default
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = ["exact/adjoint", "exact/autograd", "hutchinson/adjoint", "hutchinson/autograd"]
METRICS = [("s/iter", "{:.4f}"), ("cpu s/iter", "{:.4f}"), ("ms/NFE", "{:.3f}"), ("NFE fwd", "{:.1f}"), ("NFE bwd", "{:.1f}"),
           ("peak MB", "{:.0f}"), ("test NLL", "{:.4f}")]


def _name(*candidates: str):
    """The first importable ``module:attribute`` of ``candidates`` (the library's layout differs between refs)."""
    for candidate in candidates:
        module, attribute = candidate.split(":")
        with contextlib.suppress(ImportError, AttributeError):
            return getattr(importlib.import_module(module), attribute)
    raise ImportError(f"none of {candidates} is importable")


def cpu_and_memory(base: resource.struct_rusage) -> tuple[float, float]:
    """CPU seconds (user + system) and peak memory (MB of max RSS) of this process since ``base``."""
    now = resource.getrusage(resource.RUSAGE_SELF)
    cpu = now.ru_utime + now.ru_stime - base.ru_utime - base.ru_stime
    return cpu, (now.ru_maxrss - base.ru_maxrss) / 1024


def train_toy(trace: str, sensitivity: str, iterations: int, seed: int):
    import torch

    CNF = _name("cnflib.core:CNF", "cnflib.models:CNF")
    ConcatSquashMLP = _name("cnflib.core:ConcatSquashMLP", "cnflib.models:ConcatSquashMLP")
    fit = _name("cnflib.core.train:fit", "cnflib.train:fit")
    toy = importlib.import_module("cnflib.data.toy")

    torch.manual_seed(seed)
    train, test = toy.splits("8gaussians", 20_000, 5_000, seed=seed)
    cnf = CNF(ConcatSquashMLP(2, (64, 64, 64), "tanh"), trace=trace, sensitivity=sensitivity, T=0.5,
              solver="dopri5", atol=1e-5, rtol=1e-5)
    base = resource.getrusage(resource.RUSAGE_SELF)
    history = fit(cnf, train, steps=iterations, batch_size=100, lr=1e-3, seed=seed, progress=False)
    cpu, peak_mb = cpu_and_memory(base)
    with torch.no_grad(), cnf.trace_estimator("exact"):
        nll = -cnf.log_prob(test).mean().item()
    return history, cpu, peak_mb, nll


def train_digits(trace: str, sensitivity: str, iterations: int, seed: int):
    import torch

    build_model = _name("cnflib.infocnf:build_model")
    image_flow_loss = _name("cnflib.infocnf:infocnf_loss", "cnflib.infocnf:image_flow_loss")
    evaluate = _name("cnflib.models.image_flow:evaluate", "cnflib.infocnf:evaluate")
    fit = _name("cnflib.core.train:fit", "cnflib.train:fit")
    digits = _name("cnflib.data.images:digits")

    train, test = digits("train"), digits("test")
    torch.manual_seed(seed)
    model = build_model("unconditional", train.event_shape, train.n_classes, levels=train.levels, scales=2,
                        blocks_per_scale=1, hidden=(16, 16), tol=1e-5, trace=trace, sensitivity=sensitivity)
    base = resource.getrusage(resource.RUSAGE_SELF)
    history = fit(model, (train.x.float(), train.y), steps=iterations, loss=image_flow_loss(), batch_size=64,
                  lr=3e-3, seed=seed, progress=False)
    cpu, peak_mb = cpu_and_memory(base)
    with contextlib.ExitStack() as stack:
        for block in model.flow.blocks:
            stack.enter_context(block.trace_estimator("exact"))
        bpd = evaluate(model, test, 1e-5, seed)["bpd"]
    return history, cpu, peak_mb, bpd


def worker(spec: dict) -> dict:
    """One training run in this process (``spec``: model, variant, iterations, seed, threads)."""
    import torch

    if spec["threads"] != "default":
        torch.set_num_threads(int(spec["threads"]))
    trace, sensitivity = spec["variant"].split("/")
    train = {"toy": train_toy, "digits": train_digits}[spec["model"]]
    history, cpu, peak_mb, nll = train(trace, sensitivity, spec["iterations"], spec["seed"])
    seconds = float(history["seconds"].iloc[-1])
    tail = history.iloc[-max(1, len(history) // 10):]
    evaluations = float(history["nfe_forward"].sum() + history["nfe_backward"].sum())
    return {"s/iter": seconds / len(history), "cpu s/iter": cpu / len(history), "ms/NFE": 1e3 * seconds / evaluations,
            "NFE fwd": float(tail["nfe_forward"].mean()), "NFE bwd": float(tail["nfe_backward"].mean()),
            "peak MB": peak_mb, "test NLL": nll, "threads_used": torch.get_num_threads(),
            "library": str(Path(importlib.import_module("cnflib").__file__).resolve().parents[1])}


def run_in(tree: Path, spec: dict) -> dict:
    """Run ``spec`` in a fresh process that imports cnflib from ``tree``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONPATH")}
    env["PYTHONPATH"] = str(tree)
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)], env=env, cwd=tree,
                          capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"run {spec} in {tree} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if Path(result["library"]) != tree.resolve():
        raise RuntimeError(f"run {spec} imported cnflib from {result['library']}, not {tree}")
    return result


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def worktree(ref: str):
    """A temporary detached ``git worktree`` of this repository at ``ref``."""
    path = Path(tempfile.mkdtemp(prefix="cnflib-ref-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(path), ref], check=True,
                   capture_output=True)
    try:
        yield path
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(path)], check=True)


def print_table(rows: list[dict], labels: list[str]) -> None:
    print(f"{'variant':<20}{'threads':>8}{'code':>10}{'seed':>6}" + "".join(f"{m:>11}" for m, _ in METRICS))
    for r in rows:
        print(f"{r['variant']:<20}{r['threads']:>8}{r['code']:>10}{r['seed']:>6}"
              + "".join(f"{fmt.format(r[m]):>11}" for m, fmt in METRICS))
    if len(labels) < 2:
        return
    print(f"\nmeans over seeds, and {labels[0]}/{labels[1]} (ratio of means; NLL: difference)")
    keys = sorted({(r["variant"], r["threads"]) for r in rows}, key=lambda k: (VARIANTS.index(k[0]), k[1]))
    for variant, threads in keys:
        means = {}
        for label in labels:
            sel = [r for r in rows if (r["variant"], r["threads"], r["code"]) == (variant, threads, label)]
            means[label] = {m: statistics.mean(r[m] for r in sel) for m, _ in METRICS}
            print(f"{variant:<20}{threads:>8}{label:>10}{len(sel):>6}"
                  + "".join(f"{fmt.format(means[label][m]):>11}" for m, fmt in METRICS))
        new, ref = means[labels[0]], means[labels[1]]
        ratios = [f"{new[m] / ref[m]:.2f}x" if ref[m] else "-" for m, _ in METRICS[:-1]]
        ratios.append(f"{new['test NLL'] - ref['test NLL']:+.4f}")
        print(f"{variant:<20}{threads:>8}{'ratio':>10}{'':>6}" + "".join(f"{x:>11}" for x in ratios))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["toy", "digits"], default="toy")
    parser.add_argument("--iterations", type=int, default=None, help="default: 300 (toy), 100 (digits)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                        help="trace/sensitivity; default: all four (toy), hutchinson/adjoint (digits)")
    parser.add_argument("--threads", nargs="+", default=["1"], help="intra-op threads per run: numbers or 'default'")
    parser.add_argument("--compare", metavar="REF", help="also run the code at this git ref, alternating with this tree's")
    parser.add_argument("--concurrent", action="store_true",
                        help="with --compare: run the two trees' runs of each (variant, seed) at the same time (same load)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(json.loads(args.worker))), flush=True)
        return
    iterations = args.iterations or {"toy": 300, "digits": 100}[args.model]
    variants = args.variants or (VARIANTS if args.model == "toy" else ["hutchinson/adjoint"])
    print(f"{args.model}: {iterations} iterations, seeds {args.seeds}, threads {args.threads}; start: {uptime()}", flush=True)
    with worktree(args.compare) if args.compare else contextlib.nullcontext() as ref_tree:
        trees = [("new", ROOT)] + ([(args.compare, ref_tree)] if args.compare else [])
        rows = []
        for variant in variants:
            for threads in args.threads:
                for k, seed in enumerate(args.seeds):
                    spec = {"model": args.model, "variant": variant, "iterations": iterations, "seed": seed,
                            "threads": threads}
                    order = trees if k % 2 == 0 else trees[::-1]
                    start = time.perf_counter()
                    if args.concurrent:
                        with ThreadPoolExecutor(len(order)) as pool:
                            results = list(pool.map(lambda tree: run_in(tree, spec), [tree for _, tree in order]))
                    else:
                        results = [run_in(tree, spec) for _, tree in order]
                    for (label, _), result in zip(order, results):
                        rows.append({"variant": variant, "threads": threads, "code": label, "seed": seed, **result})
                        print(f"  {variant} threads={threads} seed={seed} {label}: {result['s/iter']:.4f} s/iter, "
                              f"NLL {result['test NLL']:.4f}", flush=True)
                    print(f"  ({time.perf_counter() - start:.0f} s; {uptime()})", flush=True)
    print(f"\n{args.model}, {iterations} iterations (NFE: per iteration, mean of the last 10%); end: {uptime()}")
    print_table(rows, [label for label, _ in trees])


if __name__ == "__main__":
    main()
