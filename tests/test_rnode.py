"""cnflib.rnode on images: RNODE's terms summed over the blocks of a multiscale CNF, and a short run."""
import math

import torch

from cnflib.models.image_cnf import MultiscaleCNF, plain_solve
from cnflib.rnode.regularizers import rnode_regularizers
from cnflib.rnode import summarize_images, train_image_flow


def test_multiscale_regularizers_are_the_sum_over_blocks():
    torch.manual_seed(0)
    regularizers, _ = rnode_regularizers(0.01, 0.01)
    flow = MultiscaleCNF((1, 4, 4), scales=2, hidden=(4,), trace="exact", solver="rk4", steps=4,
                         regularizers=regularizers)
    seen = []

    def recording_solve(k, block, h):
        out = plain_solve(k, block, h)
        seen.append(out.regularizers)
        return out

    out = flow(torch.randn(3, 1, 4, 4), recording_solve)
    assert len(seen) == 2 and set(out.regularizers) == {"kinetic", "jacobian"}
    for name in out.regularizers:
        torch.testing.assert_close(out.regularizers[name], seen[0][name] + seen[1][name])


def test_a_short_image_run_reports_bits_per_dim_nfe_and_regularizers():
    torch.set_num_threads(1)
    run = train_image_flow("digits", kinetic=0.01, jacobian=0.01, steps=2, batch_size=16, n_test=32, label="RNODE")
    assert {"kinetic", "jacobian", "bpd", "eval_bpd", "eval_nfe"} <= set(run.history.columns)
    row = summarize_images([run]).loc["RNODE"]
    assert math.isfinite(row.test_bpd) and 0 < row.test_bpd < 10 and row.nfe_total > 0
