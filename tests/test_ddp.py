"""fit with DDP on 2 CPU processes (gloo) takes the same steps as one process on the same global batches.

Lightning's ``ddp`` re-launches ``sys.argv``, so that fit runs in a script (tests/ddp_fit.py); the
forked variant (``ddp_notebook``, what a notebook uses) runs in this process.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cnflib.core.train import shard
from ddp_fit import run

SCRIPT = Path(__file__).with_name("ddp_fit.py")


def _run_ddp(tmp_path, processes=2):
    out = tmp_path / "ddp.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(SCRIPT.parents[1]), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, str(SCRIPT), str(out), "--processes", str(processes)], check=True, env=env,
                   timeout=300, cwd=tmp_path)
    return json.loads(out.read_text())


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_ddp_fit_matches_the_single_process_fit(tmp_path):
    single, ddp = run(processes=1), _run_ddp(tmp_path)
    assert ddp["steps"] == single["steps"] == [1, 2, 3, 4, 5, 6]  # every step taken, in order
    assert ddp["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)  # global-batch mean loss per step
    assert single["loss"][-1] < single["loss"][0]  # it trained
    torch.testing.assert_close(torch.tensor(ddp["params"]), torch.tensor(single["params"]), rtol=1e-4, atol=1e-5)


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed is not available")
def test_forked_ddp_returns_the_history_to_the_main_process():
    """In a notebook DDP forks (ddp_notebook): the weights *and* fit's history must come back."""
    single, forked = run(processes=1), run(processes=2, strategy="ddp_notebook")
    assert forked["steps"] == [1, 2, 3, 4, 5, 6]
    assert forked["loss"] == pytest.approx(single["loss"], rel=1e-5, abs=1e-6)
    torch.testing.assert_close(torch.tensor(forked["params"]), torch.tensor(single["params"]), rtol=1e-4, atol=1e-5)


def test_shards_split_the_batch_into_equal_contiguous_parts():
    x, y = torch.arange(12).reshape(6, 2), torch.arange(6)
    assert torch.equal(shard(x, 1, 3), x[2:4])
    assert [torch.equal(a, b) for a, b in zip(shard((x, y), 2, 3), (x[4:], y[4:]))] == [True, True]
    with pytest.raises(ValueError, match="batch size 6 is not a multiple of the 4 processes"):
        shard(x, 0, 4)
