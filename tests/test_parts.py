"""Flows by parts: gradient isolation, K=1 = end to end, the 2-process run = the alternate schedule."""

import pytest
import torch

from cnflib.models.glow import glow
from cnflib.models.stacked_cnf import stacked_cnf
from cnflib.parts import evaluate_parts, part_bounds, train_schedule, truncated_nll
from cnflib.parts.distributed import PipelineConfig, run_local


def _flow():
    torch.manual_seed(0)
    flow = glow((1, 8, 8), blocks=2, steps=2, hidden=8, seed=0)
    flow.data_init(torch.rand(64, 1, 8, 8) - 0.5)
    return flow


def _grads(flow, bounds):
    return [[p.grad is not None and bool(p.grad.abs().sum() > 0) for layer in flow.layers[a:b] for p in layer.parameters()]
            for a, b in bounds]


@pytest.mark.parametrize("how", ["by_blocks", "across_blocks"])
def test_part_bounds_cover_the_layers(how):
    flow = _flow()
    bounds = part_bounds(flow, 2, how)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(flow.layers)
    assert all(b == c for (_, b), (c, _) in zip(bounds[:-1], bounds[1:]))
    if how == "by_blocks":
        assert flow.blocks[bounds[1][0]] != flow.blocks[bounds[1][0] - 1]
    with pytest.raises(ValueError, match="valid: by_blocks, across_blocks"):
        part_bounds(flow, 2, "by_layers")
    with pytest.raises(ValueError, match="by blocks"):
        part_bounds(flow, 3, "by_blocks")


def test_no_gradient_crosses_a_part_boundary():
    flow = _flow()
    bounds = part_bounds(flow, 3, "across_blocks")
    x = torch.rand(16, 1, 8, 8) - 0.5
    for k in range(3):
        flow.zero_grad(set_to_none=True)
        truncated_nll(flow, bounds, k, x).backward()
        grads = _grads(flow, bounds)
        assert all(any(g) for g in grads[k:k + 1])
        assert not any(any(g) for j, g in enumerate(grads) if j != k)


def test_cnf_blocks_have_the_same_interface():
    flow = stacked_cnf(2, 2, (8,), solver="rk4", steps=2, sensitivity="autograd")
    bounds = part_bounds(flow, 2, "by_blocks")
    x = torch.randn(8, 2)
    truncated_nll(flow, bounds, 1, x).backward()
    grads = _grads(flow, bounds)
    assert any(grads[1]) and not any(grads[0])
    metrics = evaluate_parts(flow, bounds, x)
    assert metrics["nll"] == pytest.approx(-flow.log_prob(x).mean().item(), abs=1e-5)
    z = flow(x).z
    assert torch.allclose(flow.inverse(z), x, atol=1e-3)  # rk4 forward and reverse solves


def test_one_part_equals_end_to_end():
    data = torch.randint(0, 17, (200, 1, 8, 8), dtype=torch.uint8)
    test = torch.rand(50, 1, 8, 8) - 0.5
    prep = lambda x: x.float() / 17 - 0.5 + torch.rand(x.shape) / 17  # noqa: E731
    runs = {}
    for schedule in ("end_to_end", "alternate"):
        flow = _flow()
        runs[schedule] = (flow, train_schedule(flow, schedule, data, test, parts=1, steps=6, preprocess=prep,
                                               levels=17, eval_every=3, batch_size=16, progress=False))
    (f1, r1), (f2, r2) = runs["end_to_end"], runs["alternate"]
    assert torch.allclose(torch.tensor(r1.history.loss.to_numpy()), torch.tensor(r2.history.loss.to_numpy()), atol=1e-5)
    assert r1.final["bpd"] == pytest.approx(r2.final["bpd"], abs=1e-5)
    for p, q in zip(f1.parameters(), f2.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_two_processes_reproduce_the_alternate_schedule():
    config = PipelineConfig(parts=2, steps=8, batch_size=16, blocks=2, flow_steps=2, hidden=8)
    flow, data, preprocess, _ = config.build()
    test = preprocess(data[:50])
    single = train_schedule(flow, "alternate", data, test, parts=2, steps=8, preprocess=preprocess, eval_every=0,
                            batch_size=16, lr=config.lr, seed=config.seed, progress=False)
    dist_run = run_local(config, world_size=2)
    losses = torch.tensor([r["loss"] for r in dist_run["rows"]])
    assert [r["part"] for r in dist_run["rows"]] == [0, 1] * 4
    assert torch.allclose(losses, torch.tensor(single.history.loss.to_numpy(), dtype=torch.float32), rtol=1e-4, atol=1e-4)
    local = run_local(config, world_size=1)
    assert torch.allclose(torch.tensor([r["loss"] for r in local["rows"]]), losses, rtol=1e-4, atol=1e-4)


def test_one_and_two_processes_agree_exactly_whatever_the_callers_threads():
    """Issue 12: the caller's intra-op thread count must not leak into the one-process run."""
    config = PipelineConfig(parts=2, steps=40, batch_size=32, blocks=2, flow_steps=2, hidden=16)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        local = run_local(config, world_size=1)
        assert torch.get_num_threads() == 2  # restored for the caller
        dist_run = run_local(config, world_size=2)
    finally:
        torch.set_num_threads(before)
    assert [r["loss"] for r in local["rows"]] == [r["loss"] for r in dist_run["rows"]]


def test_pipeline_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads must be >= 1"):
        PipelineConfig(threads=0)


def test_idle_parts_do_not_move_and_validation_is_logged():
    """An alternate step changes only the trained part (Adam skips parameters without a gradient)."""
    data = torch.randint(0, 17, (64, 1, 8, 8), dtype=torch.uint8)
    test = torch.rand(20, 1, 8, 8) - 0.5
    prep = lambda x: x.float() / 17 - 0.5 + torch.rand(x.shape) / 17  # noqa: E731
    flow = _flow()
    bounds = part_bounds(flow, 2)
    before = [p.detach().clone() for p in flow.parameters()]
    layers_of = [k for k, (a, b) in enumerate(bounds) for layer in flow.layers[a:b] for _ in layer.parameters()]
    result = train_schedule(flow, "alternate", data, test, parts=2, steps=1, preprocess=prep, levels=17,
                            eval_every=1, validation=test[:10], batch_size=16, progress=False)
    moved = [not torch.equal(p, q) for p, q in zip(flow.parameters(), before)]
    assert any(moved) and not any(m for m, k in zip(moved, layers_of) if k == 1)
    assert {"eval_nll_val", "eval_bpd_val"} <= set(result.history.columns)
    assert result.final["nll_val"] == pytest.approx(-flow.log_prob(test[:10]).mean().item(), abs=1e-4)


def test_time_to_target_is_the_first_evaluation_at_or_below_it():
    import math

    import pandas as pd

    from cnflib.parts import ScheduleResult, time_to_target

    h = pd.DataFrame({"eval_bpd": [3.0, None, 2.5, 2.0, 2.2], "cpu_seconds": [1.0, 2.0, 3.0, 4.0, 5.0],
                      "seconds": [2.0, 4.0, 6.0, 8.0, 10.0]})
    r = ScheduleResult("end_to_end", 1, h, {})
    assert time_to_target(r, 2.5) == 3.0 and time_to_target(r, 2.1, clock="seconds") == 8.0
    assert time_to_target(r, 1.9) == math.inf
    steps = pd.DataFrame({"phase": ["alternate"] * 5 + ["finetune"] * 3, "part": [0, 1, 0, 1, 0, None, None, None],
                          "cpu_seconds": [1.0, 1.5, 2.5, 3.0, 4.0, 6.0, 8.0, 10.0]})
    cost = ScheduleResult("alternate_finetune", 2, steps, {}).step_seconds()
    assert cost[("alternate", 0)] == 1.0 and cost[("alternate", 1)] == 0.5 and cost[("finetune", -1)] == 2.0
