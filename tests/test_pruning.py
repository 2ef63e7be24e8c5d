"""Pruning masks: counts, persistence through training and checkpoints, structure, ratio 0."""
import pandas as pd
import pytest
import torch

from cnflib.core import CNF, ConcatSquashMLP, TimeConcatMLP
from cnflib.sparse.pruning import (METHODS, count_parameters, effective, effective_parameters, prunable_layers,
                                   prune_model, prune_retrain, restore_masks)
from cnflib.core.train import fit, load_checkpoint

DATA = torch.randn(256, 2)


def small_cnf(hidden=(16, 16)) -> CNF:
    torch.manual_seed(0)
    return CNF(ConcatSquashMLP(2, hidden=hidden), solver="rk4", steps=2, sensitivity="autograd")


def nonzero_parameters(model) -> int:
    """Nonzero entries of the tensors the model computes with (effective = orig * mask)."""
    count = 0
    for module in model.modules():
        for name, _ in module.named_parameters(recurse=False):
            count += int(effective(module, name.removesuffix("_orig")).ne(0).sum())
    return count


def prunable_nonzero(model) -> int:
    return sum(int(effective(m, "weight").ne(0).sum()) for m in prunable_layers(model))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("ratio", [0.3, 0.8])
def test_counts_equal_nonzeros_and_ratio(method, ratio):
    cnf = prune_model(small_cnf(), ratio, method)
    count = count_parameters(cnf)
    assert count.remaining == nonzero_parameters(cnf)
    assert count.prunable_remaining == prunable_nonzero(cnf)
    assert count.ratio >= ratio - 1e-9
    if method == "unstructured":
        assert count.prunable - count.prunable_remaining == round(ratio * count.prunable)
    else:  # the smallest neuron fraction that reaches the ratio: within one neuron's weights
        assert count.ratio < ratio + 0.15


def test_prunable_layers_skip_time_hypernetworks():
    cnf = small_cnf()
    layers = prunable_layers(cnf)
    assert layers == [layer.linear for layer in cnf.vector_field.layers]


@pytest.mark.parametrize("method", METHODS)
def test_masks_survive_an_optimizer_step(method):
    cnf = prune_model(small_cnf(), 0.6, method)
    zero_before = [effective(m, "weight").eq(0) for m in prunable_layers(cnf)]
    fit(cnf, DATA, steps=3, batch_size=64, lr=1e-2, optimizer="adamw", weight_decay=0.1, progress=False)
    for m, zero in zip(prunable_layers(cnf), zero_before):
        assert m.weight.eq(0)[zero].all()  # the weight used in forward
        assert effective(m, "weight")[zero].eq(0).all()
    assert count_parameters(cnf).remaining == nonzero_parameters(cnf)


@pytest.mark.parametrize("method", METHODS)
def test_masks_survive_save_and_load(method, tmp_path):
    cnf = prune_model(small_cnf(), 0.7, method)
    path = tmp_path / "ckpt.pt"
    fit(cnf, DATA, steps=2, batch_size=64, progress=False, checkpoint=path)
    state = load_checkpoint(path)["model"]  # weights_only=True
    fresh = restore_masks(CNF(ConcatSquashMLP(2, hidden=(16, 16)), solver="rk4", steps=2), state)
    assert count_parameters(fresh) == count_parameters(cnf)
    for a, b in zip(prunable_layers(fresh), prunable_layers(cnf)):
        assert torch.equal(effective(a, "weight"), effective(b, "weight"))
    x = torch.randn(32, 2)
    with torch.no_grad():
        torch.testing.assert_close(fresh.log_prob(x), cnf.log_prob(x))
    # resuming from the checkpoint on the pruned model keeps the masks as well
    fit(cnf, DATA, steps=3, batch_size=64, progress=False, checkpoint=path)
    assert count_parameters(cnf) == count_parameters(fresh)


def test_structured_removes_whole_neurons():
    cnf = prune_model(small_cnf(hidden=(16, 12)), 0.5, "structured")
    layers = cnf.vector_field.layers
    for i, layer in enumerate(layers[:-1]):
        w = effective(layer.linear, "weight")
        dead = w.eq(0).all(1)
        assert 0 < int(dead.sum()) < w.shape[0]
        assert effective(layer.linear, "bias")[dead].eq(0).all()
        assert effective(layer.gate, "weight")[dead].eq(0).all() and effective(layer.gate, "bias")[dead].eq(0).all()
        assert effective(layer.shift, "weight")[dead].eq(0).all()
        assert effective(layers[i + 1].linear, "weight")[:, dead].eq(0).all()  # outgoing weights
        assert not w[~dead].eq(0).all(1).any()  # the others are untouched rows
    # same neuron fraction in every hidden layer
    fractions = [effective(layer.linear, "weight").eq(0).all(1).float().mean().item() for layer in layers[:-1]]
    assert abs(fractions[0] - fractions[1]) <= 1 / 12 + 1e-6
    # the removed neurons no longer influence the field: perturbing their incoming weights does nothing
    x, t = torch.randn(8, 2), torch.tensor(0.3)
    with torch.no_grad():
        before = cnf.vector_field(t, x)
        layers[0].linear.weight_orig.add_(torch.randn_like(layers[0].linear.weight_orig) * ~layers[0].linear.weight_mask.bool())
        torch.testing.assert_close(cnf.vector_field(t, x), before)


def test_structured_on_plain_mlp():
    torch.manual_seed(0)
    field = TimeConcatMLP(2, hidden=(10, 10))
    prune_model(field, 0.5, "structured")
    first, second = prunable_layers(field)[:2]
    dead = effective(first, "weight").eq(0).all(1)
    assert dead.any() and effective(second, "weight")[:, dead].eq(0).all()


@pytest.mark.parametrize("method", METHODS)
def test_pruning_zero_changes_nothing(method):
    cnf = small_cnf()
    x = torch.randn(16, 2)
    with torch.no_grad():
        before = cnf.log_prob(x)
        prune_model(cnf, 0.0, method)
        after = cnf.log_prob(x)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    count = count_parameters(cnf)
    assert count.remaining == count.total and count.ratio == 0.0


def test_iterative_masks_only_grow_and_unknown_method():
    cnf = prune_model(small_cnf(), 0.4, "unstructured")
    zero = [effective(m, "weight").eq(0) for m in prunable_layers(cnf)]
    prune_model(cnf, 0.7, "unstructured")
    for m, z in zip(prunable_layers(cnf), zero):
        assert effective(m, "weight")[z].eq(0).all()
    assert count_parameters(cnf).ratio == pytest.approx(0.7, abs=1e-3)
    with pytest.raises(ValueError, match="valid: unstructured, structured"):
        prune_model(cnf, 0.8, "random")


def test_prune_retrain_records_every_ratio():
    sweep = prune_retrain(small_cnf(), DATA, [0.5, 0.8], method="unstructured", train_steps=2, retrain_steps=2,
                          batch_size=64, evaluate=lambda m: {"nll": -m.log_prob(DATA[:32]).mean().item()})
    assert list(sweep.table.index) == [0.0, 0.5, 0.8]
    assert sweep.table["measured_ratio"].tolist() == pytest.approx([0.0, 0.5, 0.8], abs=2e-3)
    assert sweep.table["params"].is_monotonic_decreasing and sweep.table["nll"].notna().all()
    for ratio, model in sweep.models.items():  # stored copies keep their own masks
        assert count_parameters(model).ratio == pytest.approx(ratio, abs=2e-3)
    shared = prune_retrain(None, DATA, [0.5], method="structured", train_steps=2, batch_size=64,
                           dense=sweep.models[0.0])
    assert shared.table["params"].iloc[0] == sweep.table["params"].iloc[0]
    assert count_parameters(sweep.models[0.0]).ratio == 0.0  # the shared dense model is untouched


@pytest.mark.parametrize("method", METHODS)
def test_forward_mode_tangents_follow_pruned_weights(method):
    field = ConcatSquashMLP(2, hidden=(16, 16))
    prune_model(field, 0.5, method)
    z, v, t = torch.randn(5, 2), torch.randn(1, 5, 2), torch.tensor(0.2)
    expected = torch.autograd.functional.jvp(lambda zz: field(t, zz), z, v[0])[1]
    torch.testing.assert_close(field.jvp(t, z, v)[1][0], expected)


def _nll(model) -> dict[str, float]:
    return {"nll": -model.log_prob(DATA[:32]).mean().item()}


def test_matched_control_at_ratio_zero_ends_identical_to_the_pruned_flow():
    # ratios that remove no weight: every pruned flow is its matched dense control, step for step
    sweep = prune_retrain(small_cnf(), DATA, [1e-9, 2e-9], method="unstructured", train_steps=2, retrain_steps=3,
                          batch_size=64, lr=1e-2, optimizer="adamw", weight_decay=0.1, seed=3,
                          lr_schedule=lambda step: 0.5 ** step, evaluate=_nll, matched_control=True)
    assert sweep.table["steps"].tolist() == [0, 3, 6]
    assert sorted(sweep.controls) == [0.0, 1e-9, 2e-9]
    for ratio in (1e-9, 2e-9):
        pruned, control = effective_parameters(sweep.models[ratio]), effective_parameters(sweep.controls[ratio])
        assert pruned.keys() == control.keys()
        assert all(torch.equal(pruned[key], control[key]) for key in pruned)
        assert len(sweep.control_histories[ratio]) == len(sweep.histories[ratio]) == 3
        assert sweep.table.nll[ratio] == sweep.table.control_nll[ratio]
        assert count_parameters(sweep.controls[ratio]).ratio == 0.0
    # and they did train: the retrained flows differ from the dense one
    assert sweep.table.nll[2e-9] != sweep.table.nll[0.0]


def test_matched_control_is_dense_equally_trained_and_shared_across_criteria():
    kwargs = dict(train_steps=2, retrain_steps=2, batch_size=64, seed=1, evaluate=_nll)
    plain = prune_retrain(small_cnf(), DATA, [0.5, 0.8], **kwargs)
    assert "steps" not in plain.table and not any(c.startswith("control_") for c in plain.table) and not plain.controls
    sweep = prune_retrain(small_cnf(), DATA, [0.5, 0.8], matched_control=True, **kwargs)
    pd.testing.assert_frame_equal(sweep.table[["params", "nll"]], plain.table[["params", "nll"]])  # same pruned runs
    assert sweep.table["control_nll"][0.0] == sweep.table["nll"][0.0]
    for ratio in (0.5, 0.8):
        assert count_parameters(sweep.controls[ratio]).ratio == 0.0
        assert len(sweep.control_histories[ratio]) == len(sweep.histories[ratio]) == 2
    assert sweep.table["control_nll"][0.5] != sweep.table["control_nll"][0.8]  # the control keeps training
    shared = prune_retrain(None, DATA, [0.5, 0.8], method="structured", dense=sweep.models[0.0], controls_from=sweep,
                           **kwargs)
    pd.testing.assert_series_equal(shared.table["control_nll"], sweep.table["control_nll"])
    assert shared.table["steps"].tolist() == [0, 2, 4] and shared.table["nll"][0.8] != sweep.table["nll"][0.8]
    with pytest.raises(ValueError, match="matched controls for ratios"):
        prune_retrain(None, DATA, [0.5], dense=sweep.models[0.0], controls_from=sweep, **kwargs)
    with pytest.raises(ValueError, match="same dense model"):
        prune_retrain(None, DATA, [0.5, 0.8], dense=sweep.models[0.5], controls_from=sweep, **kwargs)


def test_matched_control_stages_have_their_own_checkpoints_and_reload(tmp_path):
    kwargs = dict(train_steps=2, batch_size=64, seed=0, evaluate=_nll, matched_control=True,
                  checkpoint=tmp_path / "run.pt")
    first = prune_retrain(small_cnf(), DATA, [0.5], **kwargs)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["run-control0.5.pt", "run-dense.pt", "run-pruned0.5.pt"]
    again = prune_retrain(small_cnf(), DATA, [0.5], **kwargs)  # every stage is loaded, not retrained
    pd.testing.assert_series_equal(again.table["control_nll"], first.table["control_nll"])
    pd.testing.assert_series_equal(again.table["nll"], first.table["nll"])
