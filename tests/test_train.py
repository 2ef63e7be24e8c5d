"""The Lightning training helper: history, exact resume from checkpoints, NaN guard."""
import pytest
import torch
from torch import nn

from cnflib.core import CNF, ConcatSquashMLP
from cnflib.core.train import cosine_schedule, fit, flow_loss, load_checkpoint


def small_cnf() -> CNF:
    torch.manual_seed(0)
    return CNF(ConcatSquashMLP(2, hidden=(8, 8)), trace="hutchinson", solver="rk4", steps=4)


DATA = torch.randn(256, 2)


def test_history_columns_and_evaluation():
    history = fit(small_cnf(), DATA, steps=4, batch_size=32, progress=False,
                  evaluate=lambda m: {"nll": -m.log_prob(DATA[:64]).mean()}, eval_every=2)
    assert list(history.index) == [1, 2, 3, 4]
    assert {"loss", "nll", "nfe_forward", "nfe_backward", "seconds", "eval_nll"} <= set(history.columns)
    assert history["nfe_forward"].eq(16).all() and history["nfe_backward"].gt(0).all()  # adjoint
    assert history["eval_nll"].notna().tolist() == [False, True, False, True]
    assert history["seconds"].is_monotonic_increasing


def test_resume_from_checkpoint_takes_the_same_steps(tmp_path):
    straight = small_cnf()
    full = fit(straight, DATA, steps=6, batch_size=32, progress=False, seed=3)

    interrupted = small_cnf()
    fit(interrupted, DATA, steps=3, batch_size=32, progress=False, seed=3, checkpoint=tmp_path / "run.pt")
    resumed = small_cnf()  # a fresh process would rebuild the model and resume
    history = fit(resumed, DATA, steps=6, batch_size=32, progress=False, seed=3, checkpoint=tmp_path / "run.pt")

    assert list(history.index) == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(torch.tensor(history["loss"].values), torch.tensor(full["loss"].values))
    for a, b in zip(straight.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b)
    assert int(load_checkpoint(tmp_path / "run.pt")["step"]) == 6


def test_finished_checkpoint_is_loaded_not_retrained(tmp_path):
    model = small_cnf()
    first = fit(model, DATA, steps=3, batch_size=32, progress=False, checkpoint=tmp_path / "run.pt")
    reloaded = small_cnf()
    second = fit(reloaded, DATA, steps=3, batch_size=32, progress=False, checkpoint=tmp_path / "run.pt")
    assert second["loss"].tolist() == pytest.approx(first["loss"].tolist())
    for a, b in zip(model.parameters(), reloaded.parameters()):
        torch.testing.assert_close(a, b)


def test_nan_loss_stops_training_with_a_message():
    def nan_loss(model, batch):
        return model(batch).sum() * float("nan"), {}

    with pytest.raises(FloatingPointError, match=r"loss is nan at step 1 \(1-based\) of 3"):
        fit(nn.Linear(2, 1), DATA, steps=3, loss=nan_loss, progress=False)


def test_flow_loss_rejects_weights_for_missing_regularizers():
    with pytest.raises(ValueError, match="unknown regularizers \\['kinetic'\\]"):
        fit(small_cnf(), DATA, steps=1, loss=flow_loss({"kinetic": 0.1}), progress=False)


def test_fit_trains_any_module_with_a_custom_loss():
    x = torch.randn(128, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    model = nn.Linear(3, 1)

    def mse(model, batch):
        xb, yb = batch
        loss = ((model(xb).squeeze(1) - yb) ** 2).mean()
        return loss, {"mse": loss.item()}

    history = fit(model, (x, y), steps=200, loss=mse, lr=0.05, batch_size=32, progress=False)
    assert history["mse"].iloc[-1] < 1e-3


def test_configure_trainer_gives_explicit_settings_for_fit():
    from cnflib.collection import presets
    from cnflib.core import train

    assert presets.configure_trainer("full")["accelerator"] == "auto"
    settings = presets.configure_trainer("tutorial", devices=1)
    assert settings == {"accelerator": "cpu", "devices": 1, "num_nodes": 1, "strategy": "auto"}
    with pytest.raises(ValueError, match="preset"):
        presets.configure_trainer("tutorail")

    def squared_error(model, x):
        return ((model(x) - x) ** 2).mean(), {}

    history = train.fit(torch.nn.Linear(1, 1), torch.randn(16, 1), steps=2, loss=squared_error, progress=False,
                        **settings)
    assert len(history) == 2


def test_cosine_schedule_closed_form():
    """1 at step 0, (1 + final) / 2 half-way, final at the end and after it; a bad length is refused."""
    schedule = cosine_schedule(10, 0.1)
    assert schedule(0) == pytest.approx(1.0)
    assert schedule(5) == pytest.approx(0.55)
    assert schedule(10) == pytest.approx(0.1) and schedule(25) == pytest.approx(0.1)
    assert all(schedule(s) >= schedule(s + 1) for s in range(12))
    with pytest.raises(ValueError, match="steps must be at least 1"):
        cosine_schedule(0)
