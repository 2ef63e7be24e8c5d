"""Bad input and faults (issue 23): each case ends in a correct result or a clear error raised before
any work, naming the argument, the value, the valid range and the fix (and the file for file errors).

One test per case of the issue's table, named after it. The table's last case (the two-process
check of notebook 06 depending on the machine's threads) is tested in tests/test_parts.py,
``test_one_and_two_processes_agree_exactly_whatever_the_callers_threads``.
"""
from __future__ import annotations

import json
import math
import os
import pickle
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest
import torch
from torch import nn

from cnflib.collection import run_notebooks, sweep
from cnflib.collection.lock import folder_lock
from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import fit, load_checkpoint, write_checkpoint
from cnflib.data import images, tabular
from cnflib.sparse.pruning import prune_retrain, stage_checkpoint
from fakedata import trust_cifar, write_cifar, write_maf, write_mnist

DATA = torch.randn(64, 2)


def _cnf(**options) -> CNF:
    torch.manual_seed(0)
    return CNF(ConcatSquashMLP(2, hidden=(8,)), **options)


def _square_loss(model: nn.Module, batch: torch.Tensor):
    loss = model(batch).pow(2).mean()
    return loss, {"square": loss.item()}


def _notebook(folder: Path, name: str, body: str) -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('preset = "tutorial"\nseed = 0')
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / f"{name}.ipynb")
    return folder / f"{name}.ipynb"


# -- CNF: time span, input, tolerances -----------------------------------------------------------------
def test_reversed_time_span_is_refused_and_the_adjoint_gradient_matches_finite_differences():
    with pytest.raises(ValueError, match=r"T must be a finite number > 0, got -1.0: .*cnf.inverse"):
        _cnf(T=-1.0)
    cnf = _cnf(T=0.5, atol=1e-8, rtol=1e-8).double()
    cnf.T = -0.5  # changed after construction: refused at the next solve, before any evaluation
    with pytest.raises(ValueError, match="T must be a finite number > 0, got -0.5"):
        cnf.log_prob(torch.randn(4, 2, dtype=torch.float64))
    assert cnf.dynamics.total_forward == 0
    # on the span that remains (T > 0) the adjoint's gradient is autograd's and the finite differences'
    cnf.T = 0.5
    x = torch.randn(8, 2, dtype=torch.float64)
    params = list(cnf.parameters())
    direction = [torch.randn_like(p) for p in params]

    def directional(sensitivity: str) -> float:
        with cnf.solver_options(sensitivity=sensitivity):
            grads = torch.autograd.grad(cnf.log_prob(x).sum(), params)
        return sum((g * d).sum() for g, d in zip(grads, direction)).item()

    eps = 1e-5
    with torch.no_grad():
        values = []
        for sign in (1, -1):
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
            values.append(cnf.log_prob(x).sum().item())
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
    adjoint = directional("adjoint")
    assert adjoint == pytest.approx(directional("autograd"), rel=1e-6)
    assert adjoint == pytest.approx((values[0] - values[1]) / (2 * eps), rel=1e-3)  # adaptive steps: noisy FD


@pytest.mark.parametrize("T", [math.nan, math.inf, -math.inf, 0.0])
def test_non_finite_or_zero_time_span_is_refused(T):
    with pytest.raises(ValueError, match=f"T must be a finite number > 0, got {T}"):
        _cnf(T=T)


def test_non_finite_rows_empty_batch_and_bad_tolerances_fail_before_any_solve():
    cnf = _cnf()
    x = torch.randn(10, 2)
    x[3, 1], x[7, 0] = math.nan, math.inf
    with pytest.raises(ValueError, match=r"x has NaN or inf values in 2 of 10 rows \(rows \[3, 7\]\)"):
        cnf.log_prob(x)
    with pytest.raises(ValueError, match=r"z has NaN or inf values in 1 of 2 rows"):
        cnf.inverse(torch.tensor([[0.0, math.nan], [1.0, 2.0]]))
    assert cnf.dynamics.total_forward == 0  # no evaluation of the field was spent
    empty = cnf(torch.zeros(0, 2))  # an empty batch: empty results, no solve
    assert empty.z.shape == (0, 2) and empty.delta_logp.shape == (0,) and empty.nfe == 0
    assert cnf.inverse(torch.zeros(0, 2)).shape == (0, 2) and cnf.dynamics.total_forward == 0
    for name, value in [("atol", 0.0), ("atol", -1e-5), ("rtol", math.nan), ("rtol", -1.0)]:
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0, got {value}"):
            _cnf(**{name: value})
        with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
            with cnf.solver_options(**{name: value}):
                pass
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        _cnf(solver="rk4", steps=0)


def test_wrong_feature_dimension_one_dimensional_input_and_mixed_dtypes_are_named():
    cnf = _cnf()
    with pytest.raises(ValueError, match=r"x must have shape \[n, 2\] .*got \[5, 3\]"):
        cnf.log_prob(torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"got \[2\] \(one sample: x\[None\]\)"):
        cnf.log_prob(torch.randn(2))
    with pytest.raises(TypeError, match=r"x is torch.float64 but the model's parameters are torch.float32"):
        cnf.log_prob(torch.randn(5, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"x must be a floating tensor, got torch.int64"):
        cnf.log_prob(torch.ones(5, 2, dtype=torch.long))
    with pytest.raises(TypeError, match=r"z must be a torch.Tensor of shape \[n, 2\], got ndarray"):
        cnf.inverse(np.zeros((3, 2)))


# -- checkpoints ------------------------------------------------------------------------------------
def test_checkpoint_temporary_is_never_the_target_and_a_failed_save_keeps_the_old_one(tmp_path, monkeypatch):
    written = []
    save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f: (written.append(Path(f)), save(obj, f))[1])
    for name in ("run.tmp", "run.pt", "run.ckpt"):
        fit(nn.Linear(2, 1), DATA, steps=1, loss=_square_loss, progress=False, checkpoint=tmp_path / name)
    targets = [tmp_path / n for n in ("run.tmp", "run.pt", "run.ckpt")]
    assert len(set(written)) == 3 and not set(written) & set(targets)  # three temporaries, none a target
    assert all(t.name.endswith(f".{os.getpid()}.partial") for t in written)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "logs") == sorted(t.name for t in targets)  # logs/: fit's CSV history

    def killed(obj, f):  # a save that dies half-way through
        Path(f).write_bytes(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        write_checkpoint(tmp_path / "run.tmp", {"step": 99})
    assert int(load_checkpoint(tmp_path / "run.tmp")["step"]) == 1  # the old checkpoint is intact
    assert not list(tmp_path.glob("*.partial"))


def test_diverged_training_keeps_the_last_good_checkpoint_and_names_the_1_based_step(tmp_path):
    calls = []

    def diverging(model, batch):  # finite for the first three steps, then NaN
        calls.append(1)
        loss, metrics = _square_loss(model, batch)
        return (loss * math.nan if len(calls) == 4 else loss), metrics

    path = tmp_path / "run.pt"
    with pytest.raises(FloatingPointError, match=rf"nan at step 4 \(1-based\) of 6: .*{path.name} keeps step 2"):
        fit(nn.Linear(2, 1), DATA, steps=6, loss=diverging, progress=False, checkpoint=path, checkpoint_every=1)
    # step 3's weights gave the NaN loss, so the file holds step 2: weights whose loss was finite
    state = load_checkpoint(path)
    assert int(state["step"]) == 2 and len(state["history"]["step"]) == 2


def test_resume_refuses_another_seed_data_settings_or_fewer_steps(tmp_path):
    path = tmp_path / "run.pt"
    common = dict(loss=_square_loss, progress=False, checkpoint=path, batch_size=16)
    fit(nn.Linear(2, 1), DATA, steps=3, seed=0, **common)
    cases = [({"seed": 1}, r"seed: 0 in the checkpoint, 1 now"),
             ({"data": DATA + 1}, r"data: fingerprint \w+ in the checkpoint, \w+ now"),
             ({"lr": 0.1}, r"lr: 0.001 in the checkpoint, 0.1 now"),
             ({"steps": 2}, r"steps: the checkpoint holds 3 steps, more than steps=2")]
    for change, message in cases:
        kwargs = {"data": DATA, "steps": 3, "seed": 0, **common, **change}
        with pytest.raises(ValueError, match=rf"the checkpoint {path} belongs to another run; it differs in {message}.*force_resume=True"):
            fit(nn.Linear(2, 1), kwargs.pop("data"), **kwargs)
    resumed = fit(nn.Linear(2, 1), DATA, steps=5, seed=1, force_resume=True, **common)  # told to override
    assert resumed.index.tolist() == [1, 2, 3, 4, 5]
    # the resumed run is now the checkpoint's run: the same call loads it
    assert fit(nn.Linear(2, 1), DATA, steps=5, seed=1, **common).index.tolist() == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04truncated", b"\x80\x04garbage"], ids=["empty", "truncated", "corrupt"])
def test_corrupt_truncated_or_empty_checkpoint_names_the_file(tmp_path, content):
    good = tmp_path / "good.pt"
    fit(nn.Linear(2, 1), DATA, steps=1, loss=_square_loss, progress=False, checkpoint=good)
    path = tmp_path / "run.pt"
    path.write_bytes(content if content != b"PK\x03\x04truncated" else good.read_bytes()[:200])
    with pytest.raises(ValueError, match=rf"the checkpoint {path} is (empty|truncated or corrupt).*delete it"):
        fit(nn.Linear(2, 1), DATA, steps=1, loss=_square_loss, progress=False, checkpoint=path)
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(ValueError, match=rf"{path} is not a checkpoint written by cnflib.core.train.fit"):
        load_checkpoint(path)


def test_prune_retrain_gives_each_stage_its_own_checkpoint(tmp_path):
    path = tmp_path / "sweep.pt"

    def run():
        torch.manual_seed(0)
        cnf = CNF(ConcatSquashMLP(2, hidden=(8, 8)), solver="rk4", steps=2)
        return prune_retrain(cnf, DATA, [0.5, 0.75], train_steps=2, batch_size=32, checkpoint=path)

    first = run()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["sweep-dense.pt", "sweep-pruned0.5.pt", "sweep-pruned0.75.pt"]
    assert stage_checkpoint(path, "dense") == tmp_path / "sweep-dense.pt"
    second = run()  # every stage loads its own finished checkpoint (the pruned ones with their masks)
    assert second.table["params"].tolist() == first.table["params"].tolist()
    for ratio in (0.0, 0.5, 0.75):
        for a, b in zip(first.models[ratio].state_dict().values(), second.models[ratio].state_dict().values()):
            torch.testing.assert_close(a, b)


# -- runner and sweeps ------------------------------------------------------------------------------------
def test_runner_rejects_an_undeclared_parameter_or_unknown_preset_before_running(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    _notebook(notebooks, "01_ok", "ran = True")
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", notebooks)
    out = tmp_path / "out"
    assert run_notebooks.main(["--output", str(out), "-p", "presett", "full"]) == 2
    assert "unknown parameters ['presett'] for 01_ok; valid: preset, seed" in capsys.readouterr().err
    assert run_notebooks.main(["--output", str(out), "-p", "preset", "fulll"]) == 2
    assert "unknown preset 'fulll'; valid: tutorial, full" in capsys.readouterr().err
    assert not (out / "01_ok").exists()  # nothing ran


@pytest.mark.parametrize("text, message", [
    ("", "the sweep file is empty"),
    ("- notebook: 01_tiny\n", "a sweep is a mapping of keys .* got a list"),
    ("notebook: 01_tiny\ngrid: seed\n", r"'grid' must be a mapping .* got 'seed'"),
    ("notebook: 01_tiny\ngrid: {seed: 0}\n", r"grid\['seed'\] must be a non-empty list, got 0"),
    ("notebook: 01_tiny\ngrid: {seed: [0]}\nmetrics: runtime_s\n", r"'metrics' must be a list of metric names, got 'runtime_s'"),
    ("notebook: 01_tiny\ngrid: {seed: [0, 0, 1]}\n", r"grid\['seed'\] repeats the values 0"),
    ("notebook: 01_tiny\ngrid: {preset: [tutorial, fulll]}\n", "unknown preset 'fulll'"),
    ("notebook: 01_tiny\nparameters: [preset]\n", r"'parameters' must be a mapping"),
    ("notebook: [01\n", "cannot read the sweep file"),
], ids=["empty", "list", "grid-scalar", "grid-value-scalar", "metrics-string", "duplicates", "bad-preset-in-grid",
        "parameters-list", "yaml-syntax"])
def test_sweep_file_errors_name_the_key_before_running(tmp_path, monkeypatch, capsys, text, message):
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", tmp_path / "notebooks")
    _notebook(tmp_path / "notebooks", "01_tiny", "ran = True")
    spec = tmp_path / "bad.yaml"
    spec.write_text(text)
    assert sweep.main([str(spec), "--out", str(tmp_path / "out"), "-p", "seed", "0"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}: ") and re.search(message, err), err
    assert not (tmp_path / "out").exists()


def test_one_points_unreadable_metrics_json_is_that_points_failure(tmp_path, monkeypatch, capsys):
    import papermill

    def fake_execute(notebook, output, parameters, **kwargs):  # seed 1 writes a truncated metrics.json
        text = '{"score": ' if parameters["seed"] == 1 else json.dumps({"score": parameters["seed"]})
        (Path(os.environ["CNFLIB_OUTPUT_DIR"]) / "metrics.json").write_text(text)

    monkeypatch.setattr(papermill, "execute_notebook", fake_execute)
    notebook = _notebook(tmp_path / "notebooks", "01_tiny", "")
    s = sweep.parse({"notebook": str(notebook), "grid": {"seed": [0, 1, 2]}})
    rows = {r["seed"]: r for r in sweep.run(s, tmp_path / "out", progress=False)}
    assert [rows[k]["status"] for k in (0, 1, 2)] == ["ok", "FAILED", "ok"]
    assert "metrics.json is unreadable (JSONDecodeError" in rows[1]["error"]
    # a finished point whose metrics.json was damaged later runs again instead of stopping the sweep
    (tmp_path / "out" / rows[0]["folder"] / "metrics.json").write_text("{")
    rows = {r["seed"]: r for r in sweep.run(s, tmp_path / "out", progress=False)}
    assert [rows[k]["status"] for k in (0, 1, 2)] == ["ok", "FAILED", "done"]
    assert "running the point again" in capsys.readouterr().err


def test_a_second_run_on_a_locked_output_folder_stops_naming_the_holder(tmp_path, monkeypatch, capsys):
    notebooks = tmp_path / "notebooks"
    _notebook(notebooks, "01_tiny", "ran = True")
    monkeypatch.setattr(run_notebooks, "NOTEBOOKS", notebooks)
    spec = tmp_path / "tiny.yaml"
    spec.write_text("notebook: 01_tiny\ngrid: {seed: [0]}\n")
    out = tmp_path / "out"
    with folder_lock(out):  # another run holds the folder
        assert sweep.main([str(spec), "--out", str(out)]) == 2
        assert f"the output folder {out} is in use by pid {os.getpid()} on " in capsys.readouterr().err
        assert run_notebooks.main(["--output", str(out)]) == 2
        assert "is in use by pid" in capsys.readouterr().err
        assert not any(p.is_dir() for p in out.iterdir())  # the second run touched nothing
    with folder_lock(out):  # released at the end of the first run
        pass


# -- data files -----------------------------------------------------------------------------------------
def test_crafted_gas_pickle_is_refused_without_running_code(tmp_path):
    write_maf(tmp_path, np.random.default_rng(0))
    marker = tmp_path / "code-ran"

    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    (tmp_path / "maf" / "gas" / "ethylene_CO.pickle").write_bytes(pickle.dumps(Payload()))
    with pytest.raises(ValueError, match=r"(?s)ethylene_CO.pickle is not a readable GAS file .*refers to "
                                         r"(posix|os)\.system.*python -m cnflib.data download gas"):
        tabular.load("gas", "train", tmp_path)
    assert not marker.exists()


def test_tabular_file_with_wrong_width_too_few_rows_or_nan_is_refused(tmp_path):
    write_maf(tmp_path, np.random.default_rng(0))
    path = tmp_path / "maf" / "miniboone" / "data.npy"
    good = np.load(path)
    cases = [(good[:, :40], r"shape \[1000, 40\]; MINIBOONE files have 43 columns"),
             (good[:9], "has 9 rows; MINIBOONE needs at least 12"),
             (np.where(np.arange(1000)[:, None] == 5, np.nan, good), "NaN or inf values in 1 of 1000 rows .*row 5")]
    for array, message in cases:
        tabular._splits.cache_clear()
        np.save(path, array)
        with pytest.raises(ValueError, match=rf"(?s){path}.*{message}.*download miniboone"):
            tabular.load("miniboone", "train", tmp_path)


def test_garbage_image_and_tabular_files_name_the_file_and_the_download_command(tmp_path, monkeypatch):
    write_mnist(tmp_path, np.random.default_rng(0))
    bad = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"(?s){bad} is damaged.*python -m cnflib.data download mnist") as error:
        images.mnist("test", tmp_path)
    _, md5 = write_cifar(tmp_path, np.random.default_rng(1))
    trust_cifar(md5, monkeypatch)
    batch = tmp_path / "cifar-10-batches-py" / "test_batch"
    batch.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"(?s){batch} is damaged.*download cifar10") as cifar_error:
        images.cifar10("test", tmp_path)
    assert "download=True" not in str(error.value) + str(cifar_error.value)  # our loader has no such option
    write_maf(tmp_path, np.random.default_rng(0))
    for name, relative in [("hepmass", "hepmass/1000_train.csv"), ("power", "power/data.npy")]:
        path = tmp_path / "maf" / relative
        path.write_bytes(b"\x00\x01garbage\xff" * 10)
        tabular._splits.cache_clear()
        with pytest.raises(ValueError, match=rf"(?s){path} .*download {name}"):
            tabular.load(name, "train", tmp_path)
    pytest.importorskip("h5py")  # BSDS300 (checked last) needs it
    path = tmp_path / "maf" / "BSDS300" / "BSDS300.hdf5"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"garbage")
    with pytest.raises(ValueError, match=rf"(?s){path} is not a readable BSDS300 file.*download bsds300"):
        tabular.load("bsds300", "train", tmp_path)
