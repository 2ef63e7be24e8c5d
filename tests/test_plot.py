"""cnflib.collection.plot: the interval helper draws the bounds it is given."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from cnflib.collection.plot import plot_intervals  # noqa: E402


def test_plot_intervals_draws_low_and_high():
    fig, ax = plt.subplots()
    plot_intervals(ax, [1.0, 2.0], [0.5, -0.2], [0.1, -0.5], [0.6, 0.4], label="median")
    container = ax.containers[0]
    segments = container.lines[2][0].get_segments()  # one vertical bar per point: [[x, low], [x, high]]
    np.testing.assert_allclose([s[:, 1] for s in segments], [[0.1, 0.6], [-0.5, 0.4]])
    np.testing.assert_allclose(container.lines[0].get_ydata(), [0.5, -0.2])
    assert container.get_label() == "median"
    plt.close(fig)


def test_plot_intervals_rejects_an_interval_without_its_centre():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="swapped"):
        plot_intervals(ax, [0.0], [1.0], [2.0], [3.0])
    plt.close(fig)
