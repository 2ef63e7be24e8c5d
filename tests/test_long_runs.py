"""Long runs survive: checkpoints of every fit under the ``full`` preset, their CSV history,
atomic writes, and a sweep point killed mid-training (SIGKILL) that resumes to the same result."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from torch import nn

from cnflib.core.train import RunCheckpoints, fit, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
X = torch.randn(256, 2, generator=torch.Generator().manual_seed(1))
Y = X.sum(1, keepdim=True) ** 2


def mse(model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
    x, y = batch
    return ((model(x) - y) ** 2).mean(), {}


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))


def _two_fits(steps: int = 12, **trainer) -> tuple[nn.Module, nn.Module, float]:
    torch.manual_seed(0)
    first = mlp()
    fit(first, (X, Y), steps=steps, loss=mse, batch_size=32, progress=False, desc="first", **trainer)
    between = float(torch.rand(()))  # a random draw after a fit: the same after a loaded one
    second = mlp()
    fit(second, (X, Y), steps=steps, loss=mse, batch_size=32, progress=False, **trainer)
    return first, second, between


def test_run_checkpoints_name_each_call_and_log_its_history(tmp_path):
    reference = _two_fits()
    _two_fits(checkpoints=RunCheckpoints(tmp_path, every=5))
    assert sorted(p.name for p in tmp_path.glob("*.ckpt")) == ["fit-000-first.ckpt", "fit-001.ckpt"]
    assert int(load_checkpoint(tmp_path / "fit-001.ckpt")["step"]) == 12 and not list(tmp_path.glob("*.partial"))
    csv = pd.read_csv(tmp_path / "logs" / "fit-000-first" / "metrics.csv")
    assert csv["step"].tolist() == list(range(1, 13)) and {"loss", "nfe_forward", "seconds"} <= set(csv.columns)
    again = _two_fits(checkpoints=RunCheckpoints(tmp_path, every=5))  # a re-run: both loaded, not retrained
    for a, b in zip(reference[:2], again[:2]):
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert again[2] == reference[2]


def test_a_checkpoint_of_another_fit_call_is_refused(tmp_path):
    fit(mlp(), (X, Y), steps=4, loss=mse, batch_size=32, progress=False, checkpoints=RunCheckpoints(tmp_path))
    wider = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    with pytest.raises((ValueError, RuntimeError), match="size mismatch|differ"):
        fit(wider, (X, Y), steps=4, loss=mse, batch_size=32, progress=False, checkpoints=RunCheckpoints(tmp_path))
    with pytest.raises(ValueError, match="lr"):
        fit(mlp(), (X, Y), steps=4, loss=mse, batch_size=32, lr=0.1, progress=False, checkpoints=RunCheckpoints(tmp_path))


def test_a_resumed_run_rewrites_the_csv_from_the_checkpoint_step(tmp_path):
    checkpoint = tmp_path / "run.ckpt"
    torch.manual_seed(0)
    fit(mlp(), (X, Y), steps=8, loss=mse, batch_size=32, progress=False, checkpoint=checkpoint, checkpoint_every=4)
    state = load_checkpoint(checkpoint)
    state["step"] = 4  # as if killed after step 6 with the last checkpoint at step 4
    state["history"] = {k: v[:4] for k, v in state["history"].items()}
    torch.save(state, checkpoint)
    history = fit(mlp(), (X, Y), steps=10, loss=mse, batch_size=32, progress=False, checkpoint=checkpoint)
    csv = pd.read_csv(tmp_path / "logs" / "run" / "metrics.csv")
    assert csv["step"].tolist() == list(range(1, 11))
    assert history["seconds"].is_monotonic_increasing and history["cpu_seconds"].is_monotonic_increasing


KILL_WHILE_SAVING = """
import io, os, signal, sys, torch
from torch import nn
sys.path.insert(0, {tests!r})
from test_long_runs import X, Y, mlp, mse
from cnflib.core.train import fit
real, calls = torch.save, []
def dying_save(obj, f, *args, **kwargs):  # the second checkpoint: half written, then SIGKILL
    calls.append(1)
    if len(calls) == 2:
        buffer = io.BytesIO(); real(obj, buffer)
        with open(f, "wb") as handle:
            handle.write(buffer.getvalue()[: len(buffer.getvalue()) // 2]); handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real(obj, f, *args, **kwargs)
torch.save = dying_save
torch.manual_seed(0)
fit(mlp(), (X, Y), steps=9, loss=mse, batch_size=32, progress=False, checkpoint={path!r}, checkpoint_every=3)
"""


def test_a_run_killed_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path):
    path = tmp_path / "run.ckpt"
    script = KILL_WHILE_SAVING.format(tests=str(ROOT / "tests"), path=str(path))
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert int(load_checkpoint(path)["step"]) == 3  # the good one, not the half-written step 6
    assert list(tmp_path.glob("run.ckpt.*.partial"))  # the torn temporary is beside it, never in its place
    torch.manual_seed(0)
    resumed = mlp()
    fit(resumed, (X, Y), steps=9, loss=mse, batch_size=32, progress=False, checkpoint=path, checkpoint_every=3)
    assert not list(tmp_path.glob("run.ckpt.*.partial"))
    torch.manual_seed(0)
    straight = mlp()
    fit(straight, (X, Y), steps=9, loss=mse, batch_size=32, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(straight.state_dict().values(), resumed.state_dict().values()))


POINT_CODE = '''
import time
import torch
from torch import nn
from cnflib.core.train import fit, seed_everything


def run(steps: int, seed: int, pause: float, trainer: dict):
    """Two fits: a short one, then a long one that the test kills."""
    torch.set_num_threads(1)
    seed_everything(seed)
    x = torch.randn(256, 2)
    y = x.sum(1, keepdim=True) ** 2

    def mse(model, batch):
        time.sleep(pause)
        xb, yb = batch
        return ((model(xb) - yb) ** 2).mean(), {}

    def mlp():
        return nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 1))

    first = mlp()
    fit(first, (x, y), steps=20, loss=mse, batch_size=32, seed=seed, progress=False, desc="first", **trainer)
    between = float(torch.rand(()))
    second = mlp()
    fit(second, (x, y), steps=steps, loss=mse, batch_size=32, seed=seed, progress=False, desc="second", **trainer)
    return {"first": first.state_dict(), "second": second.state_dict()}, between
'''


def _point_notebook(folder: Path) -> Path:
    import nbformat

    (folder / "resume_point.py").write_text(POINT_CODE)
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    parameters = nbformat.v4.new_code_cell('preset = "full"\nseed = 0\nsteps = 300\npause = 0.01')
    parameters.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(textwrap.dedent("""
        import os, sys
        import torch
        sys.path.insert(0, os.getcwd())
        import resume_point
        from cnflib.collection.presets import configure_trainer
        from cnflib.collection.report import output_dir, record_metrics
        trainer = configure_trainer(preset, accelerator="cpu", checkpoint_every=10)
        (output_dir() / "kernel.pid").write_text(str(os.getpid()))
        state, between = resume_point.run(steps, seed, pause, trainer)
        torch.save(state, output_dir() / "final.pt")
        record_metrics(between=between)
    """))
    nb.cells = [parameters, body]
    path = folder / "99_resume_point.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_killed_sweep_point_resumes_from_its_checkpoint_to_the_same_parameters(tmp_path):
    notebook = _point_notebook(tmp_path)
    sweep_file = tmp_path / "resume.yaml"
    sweep_file.write_text(f"notebook: {notebook}\nparameters: {{preset: full}}\ngrid:\n  seed: [0]\n")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}
    command = [sys.executable, "-m", "cnflib.collection.sweep", str(sweep_file), "--out", str(out)]
    sweep = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            ckpts = list(out.glob("*.running/checkpoints/fit-001-second.ckpt"))
            if ckpts and int(load_checkpoint(ckpts[0])["step"]) >= 50:
                break
            assert sweep.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.2)
        else:
            pytest.fail("no checkpoint of the second fit within 240 s")
        running = ckpts[0].parents[1]
        os.kill(int((running / "kernel.pid").read_text()), signal.SIGKILL)  # the training process
        os.killpg(sweep.pid, signal.SIGKILL)
    finally:
        if sweep.poll() is None:
            os.killpg(sweep.pid, signal.SIGKILL)
        sweep.wait()
    killed_at = int(load_checkpoint(ckpts[0])["step"])  # loads: never a half-written file in its place
    assert 50 <= killed_at < 300 and not (running.parent / running.name.removesuffix(".running")).exists()

    rerun = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "resuming from the checkpoints" in rerun.stderr
    done = running.parent / running.name.removesuffix(".running")
    log = (done / "output.log").read_text()
    assert f"resuming from {running}/checkpoints/fit-001-second.ckpt at step {killed_at} of 300" in log, log[-2000:]
    assert "fit-000-first.ckpt is complete (20 steps)" in log
    history = pd.read_csv(done / "checkpoints" / "logs" / "fit-001-second" / "metrics.csv")
    assert history["step"].tolist() == list(range(1, 301))  # each step once, none lost or repeated

    sys.path.insert(0, str(tmp_path))
    try:
        import resume_point
    finally:
        sys.path.remove(str(tmp_path))
    expected, between = resume_point.run(300, 0, 0.0, {})  # uninterrupted, no checkpoints
    got = torch.load(done / "final.pt", weights_only=True)
    for name in ("first", "second"):
        assert all(torch.equal(expected[name][k], got[name][k]) for k in expected[name]), name
    import json

    assert json.loads((done / "metrics.json").read_text())["between"] == between


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_forked_ddp_writes_one_checkpoint_and_one_history(tmp_path):
    from ddp_fit import run

    single = run(processes=1)
    forked = run(processes=2, strategy="ddp_notebook", checkpoint=tmp_path / "ddp.ckpt")
    state = load_checkpoint(tmp_path / "ddp.ckpt")
    assert int(state["step"]) == 6 and not list(tmp_path.glob("*.partial"))
    assert pd.read_csv(tmp_path / "logs" / "ddp" / "metrics.csv")["step"].tolist() == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(torch.tensor(forked["params"]), torch.tensor(single["params"]), rtol=1e-4, atol=1e-5)
