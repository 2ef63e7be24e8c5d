"""Toy data sets: shapes, determinism, modes and exact densities."""
import pytest
import torch

from cnflib.data import toy


@pytest.mark.parametrize("name", toy.NAMES)
def test_every_set_samples_with_its_dimension(name):
    x = toy.sample(name, 257, torch.Generator().manual_seed(1))
    assert x.shape == (257, toy.dim(name)) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    torch.testing.assert_close(x, toy.sample(name, 257, torch.Generator().manual_seed(1)))


def test_unknown_name_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown dataset 'gaussian'.*valid: 8gaussians, 2spirals"):
        toy.sample("gaussian", 10)


@pytest.mark.parametrize("name", toy.MIXTURE_NAMES)
def test_mixture_modes_and_density(name):
    centers, stds = toy.modes(name)
    assert centers.shape[0] == stds.shape[0] and centers.shape[1] == toy.dim(name)
    x = toy.sample(name, 20_000, torch.Generator().manual_seed(0))
    nearest = torch.cdist(x, centers).argmin(1)
    assert set(nearest.unique().tolist()) == set(range(len(centers)))  # every mode is populated
    # the exact density integrates to one on a grid
    axis = torch.linspace(-7, 7, 3000 if toy.dim(name) == 1 else 400)
    points = axis[:, None] if toy.dim(name) == 1 else torch.cartesian_prod(axis, axis)
    cell = (axis[1] - axis[0]) ** toy.dim(name)
    assert abs((toy.log_density(name, points).exp().sum() * cell).item() - 1) < 1e-3


def test_modes_of_a_non_mixture_set_raise():
    with pytest.raises(ValueError, match="mixture-type dataset"):
        toy.modes("moons")


def test_published_geometry():
    centers, stds = toy.modes("8gaussians")
    torch.testing.assert_close(centers.norm(dim=1), torch.full((8,), 4 / 1.414))
    centers, stds = toy.modes("gaussians_spiral")
    assert centers.norm(dim=1)[0] == pytest.approx(4.0) and centers.norm(dim=1)[-1] == pytest.approx(1.0)
    assert stds[0] == pytest.approx(0.3) and stds[-1] == pytest.approx(0.1)


def test_splits_are_disjoint_draws():
    train, test = toy.splits("moons", 100, 50, seed=3)
    assert train.shape == (100, 2) and test.shape == (50, 2)
    assert not torch.equal(train[:50], test)
