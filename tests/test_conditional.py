"""Conditional priors of CCNF and InfoCNF against closed forms."""
import math

import pytest
import torch

from cnflib.core.distributions import diagonal_gaussian_log_prob
from cnflib.infocnf.priors import ConditionalPrior, ccnf_prior, infocnf_prior, parameter_count


def test_diagonal_gaussian_log_prob_matches_torch():
    z, mean, log_std = torch.randn(4, 3), torch.randn(4, 3), 0.3 * torch.randn(4, 3)
    ref = torch.distributions.Normal(mean, log_std.exp()).log_prob(z).sum(1)
    assert torch.allclose(diagonal_gaussian_log_prob(z, mean, log_std), ref, atol=1e-5)


def test_infocnf_splits_the_latent():
    prior = infocnf_prior(8, 3)
    assert prior.cond_dim == 4
    with torch.no_grad():
        prior.prior.bias.copy_(torch.tensor([1.0, 2, 3, 4, 0.1, 0.2, 0.3, 0.4]))
    z, y = torch.randn(5, 8), torch.zeros(5, dtype=torch.long)
    mean, log_std = torch.tensor([1.0, 2, 3, 4]), torch.tensor([0.1, 0.2, 0.3, 0.4])
    expected = (torch.distributions.Normal(mean, log_std.exp()).log_prob(z[:, :4]).sum(1)
                + torch.distributions.Normal(0.0, 1.0).log_prob(z[:, 4:]).sum(1))
    assert torch.allclose(prior.log_prob(z, y), expected, atol=1e-5)


def test_marginal_is_logsumexp_over_classes():
    torch.manual_seed(0)
    prior = ccnf_prior(6, 4)
    torch.nn.init.normal_(prior.prior.weight)
    z = torch.randn(7, 6)
    per_class = torch.stack([prior.log_prob(z, torch.full((7,), k)) for k in range(4)], 1)
    assert torch.allclose(prior.class_log_probs(z), per_class, atol=1e-5)
    expected = torch.log(per_class.exp().mean(1))
    assert torch.allclose(prior.marginal_log_prob(z), expected, atol=1e-5)
    # untrained prior (all zeros): every class is N(0, I), so the marginal is N(0, I) too
    fresh = ccnf_prior(6, 4)
    assert torch.allclose(fresh.marginal_log_prob(z), -0.5 * (z**2).sum(1) - 3 * math.log(2 * math.pi), atol=1e-5)


def test_parameter_counts():
    d, k = 64, 10
    assert parameter_count(ccnf_prior(d, k)) == (k * 2 * d + 2 * d) + (d * k + k)
    assert parameter_count(infocnf_prior(d, k)) == (k * d + d) + (d // 2 * k + k)
    assert parameter_count(infocnf_prior(d, k)) < parameter_count(ccnf_prior(d, k))


def test_classifier_reads_only_z_y_and_sampling_follows_the_prior():
    prior = infocnf_prior(6, 2).eval()
    z = torch.randn(3, 6)
    z2 = z.clone()
    z2[:, 3:] = 100.0
    assert torch.allclose(prior.logits(z), prior.logits(z2))
    with torch.no_grad():
        prior.prior.bias.copy_(torch.tensor([5.0, 5, 5, -1, -1, -1]))
    s = prior.sample(20_000, torch.zeros(20_000, dtype=torch.long), generator=torch.Generator().manual_seed(0))
    assert torch.allclose(s[:, :3].mean(0), torch.full((3,), 5.0), atol=0.02)
    assert torch.allclose(s[:, :3].std(0), torch.full((3,), math.exp(-1)), atol=0.02)
    assert torch.allclose(s[:, 3:].std(0), torch.ones(3), atol=0.03)


def test_bad_cond_dim_raises():
    with pytest.raises(ValueError):
        ConditionalPrior(4, 2, cond_dim=5)


def test_evaluation_uses_the_exact_trace_for_small_images_and_seeded_noise_otherwise():
    from cnflib.data.images import ImageSplit
    from cnflib.infocnf.runs import build_model, evaluate_infocnf, evaluation_trace

    torch.manual_seed(0)
    small = build_model("infocnf", (1, 8, 8), 3, hidden=(4,), tol=1e-3)
    with evaluation_trace(small) as trace:
        assert trace == "exact" and all(b.dynamics.trace == "exact" for b in small.flow.blocks)
    assert all(b.dynamics.trace == "hutchinson" for b in small.flow.blocks)
    data = ImageSplit(torch.randint(0, 17, (6, 1, 8, 8), dtype=torch.uint8), torch.randint(0, 3, (6,)), 17)
    first = evaluate_infocnf(small, data, seed=1)
    torch.randn(5)  # the global random state does not matter
    assert evaluate_infocnf(small, data, seed=1) == first
    large = build_model("unconditional", (1, 16, 32), 3, hidden=(2,), tol=1e-2)
    with evaluation_trace(large, seed=3) as trace:
        assert trace == "seeded hutchinson"
    big = ImageSplit(torch.randint(0, 17, (2, 1, 16, 32), dtype=torch.uint8), torch.zeros(2, dtype=torch.long), 17)
    state = torch.get_rng_state()
    assert evaluate_infocnf(large, big, seed=3) == evaluate_infocnf(large, big, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_supervised_fraction_sets_the_size_of_z_y():
    from cnflib.infocnf.runs import build_model

    assert build_model("infocnf", (1, 8, 8), 10, hidden=(4,)).base.cond_dim == 32
    assert build_model("infocnf", (1, 8, 8), 10, hidden=(4,), supervised_fraction=0.25).base.cond_dim == 16
    assert build_model("infocnf", (1, 8, 8), 10, hidden=(4,), supervised_fraction=1.0).base.cond_dim == 64
    with pytest.raises(ValueError):
        build_model("infocnf", (1, 8, 8), 10, hidden=(4,), supervised_fraction=0.0)
