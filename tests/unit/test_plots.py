"""course.plots on tiny synthetic data, drawn with the Agg backend (no display)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course import plots
from course.foundations.training import History

plt.switch_backend("Agg")
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def test_moving_average_is_trailing_and_starts_at_the_first_point() -> None:
    got = plots.moving_average([1.0, 3.0, 5.0, 7.0], window=2)
    np.testing.assert_allclose(got, [1.0, 2.0, 4.0, 6.0])
    np.testing.assert_allclose(plots.moving_average([2.0, 4.0], window=10), [2.0, 3.0])
    assert plots.moving_average([], window=3).size == 0
    with pytest.raises(ValueError):
        plots.moving_average([1.0], window=0)


def test_loss_curve_draws_steps_smoothing_and_epoch_means() -> None:
    h = History()
    h.add_epoch([2.0, 1.0, 1.5, 0.5])
    h.add_epoch([0.4, 0.2, 0.3, 0.1])
    ax = plots.loss_curve(h, window=2)
    lines = ax.get_lines()
    assert len(lines) == 3
    np.testing.assert_allclose(lines[0].get_ydata(), h.step_losses)
    np.testing.assert_allclose(lines[1].get_ydata(), [2.0, 1.5, 1.25, 1.0, 0.45, 0.3, 0.25, 0.2])
    np.testing.assert_allclose(lines[2].get_xdata(), [3, 7])
    np.testing.assert_allclose(lines[2].get_ydata(), [1.25, 0.25])
    assert ax.get_yscale() == "log"


def test_loss_curve_draws_on_a_given_axes() -> None:
    fig, ax = plt.subplots()
    h = History()
    h.add_epoch([1.0, -0.5])  # a negative "loss" (e.g. a log-likelihood) keeps a linear axis
    assert plots.loss_curve(h, ax=ax) is ax
    assert ax.get_yscale() == "linear"


def test_confusion_counts_rows_are_true_classes() -> None:
    counts = plots.confusion_counts([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], n_classes=4)
    expected = np.array([[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(ValueError):
        plots.confusion_counts([0, 1], [0], n_classes=2)


def test_confusion_matrix_plot_shows_counts_and_labels() -> None:
    y_true = np.array([0, 0, 1, 2, 2, 2])
    y_pred = torch.tensor([0, 1, 1, 2, 0, 2])
    ax = plots.confusion_matrix(y_true, y_pred.numpy(), labels=["a", "b", "c"])
    image = ax.get_images()[0].get_array()
    assert image.shape == (3, 3)
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert texts == {(0, 0): "1", (0, 1): "1", (1, 1): "1", (2, 0): "1", (2, 2): "2"}
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert ax.get_ylabel() == "true" and ax.get_xlabel() == "predicted"
    assert "6 examples, 4 correct" in ax.get_title()


def test_sample_grid_titles_marks_mistakes_and_hides_spare_axes() -> None:
    images = np.zeros((5, 1, 28, 28), dtype=np.uint8)
    fig = plots.sample_grid(
        images,
        labels=torch.tensor([1, 2, 3, 4, 5]),
        predictions=torch.tensor([1, 7, 3, 4, 5]),
        ncols=3,
        title="mistakes",
    )
    axes = fig.axes
    assert len(axes) == 6
    titles = [ax.get_title() for ax in axes]
    assert titles[:5] == ["1", "2→7", "3", "4", "5"] and titles[5] == ""
    assert axes[1].title.get_color() == "tab:red" and axes[0].title.get_color() == "black"
    assert axes[0].get_images()[0].get_array().shape == (28, 28)
    assert fig.get_suptitle() == "mistakes"
    with pytest.raises(ValueError):
        plots.sample_grid(images, labels=[1, 2])


def test_latency_cdf_draws_one_step_curve_per_variant_with_its_p95() -> None:
    rng = np.random.default_rng(0)
    ax = plots.latency_cdf({"naive": rng.lognormal(2, 0.5, 500), "batched": rng.lognormal(0, 0.3, 500), "none": []})
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert len(labels) == 2 and labels[0].startswith("naive (p95 ") and ax.get_xscale() == "log"
    steps = [line for line in ax.get_lines() if len(line.get_xdata()) == 500]
    assert len(steps) == 2 and steps[0].get_ydata()[-1] == 1.0


def test_throughput_latency_sorts_points_by_offered_load() -> None:
    ax = plots.throughput_latency({"naive": [(160, 40.0), (50, 5.0), (100, 8.0)]})
    (line,) = ax.get_lines()
    assert list(line.get_xdata()) == [50, 100, 160] and list(line.get_ydata()) == [5.0, 8.0, 40.0]
