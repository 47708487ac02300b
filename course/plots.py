"""The few plots every training lab draws: loss curves, confusion matrices, image grids.

Each function draws on an Axes (a new figure when none is given) and returns what
it drew on, so a notebook can combine plots and a test can inspect them without a
display.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from course.foundations.training import History


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _, new = plt.subplots(figsize=figsize)
    return new


def _plain(values: Any) -> list[Any]:
    """Python scalars from a list, array or tensor, so titles read `7`, not `tensor(7)`."""
    return list(values.tolist()) if hasattr(values, "tolist") else list(values)


def moving_average(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over `window` points (shorter at the start), so the curve starts at step 0.

    Per-step losses are noisy; the smoothed line is what a learner should read.
    """
    v = np.asarray(values, dtype=float)
    if window < 1:
        raise ValueError(f"window must be positive, not {window}")
    if v.size == 0:
        return v
    csum = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, v.size + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


def loss_curve(history: History, ax: Axes | None = None, window: int | None = None) -> Axes:
    """Per-step training loss (faint), its moving average, and each epoch's mean loss."""
    ax = _axes(ax, (7, 3.5))
    steps = np.arange(len(history.step_losses))
    if window is None:
        window = max(1, len(steps) // 50)
    ax.plot(steps, history.step_losses, color="tab:blue", alpha=0.25, lw=0.8, label="loss per step")
    ax.plot(
        steps,
        moving_average(history.step_losses, window),
        color="tab:blue",
        lw=1.8,
        label=f"moving average ({window} steps)",
    )
    if history.epoch_ends:
        ax.plot(np.asarray(history.epoch_ends) - 1, history.epoch_losses(), "o", color="tab:orange", label="epoch mean")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    if len(history.step_losses) and min(history.step_losses) > 0:
        ax.set_yscale("log")  # late improvements are invisible on a linear scale
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right")
    return ax


def confusion_counts(
    y_true: Sequence[int] | np.ndarray, y_pred: Sequence[int] | np.ndarray, n_classes: int
) -> np.ndarray:
    """counts[i, j] = how many examples of true class i were predicted as class j."""
    t = np.asarray(y_true, dtype=np.int64).ravel()
    p = np.asarray(y_pred, dtype=np.int64).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} labels but y_pred has {p.size}")
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (t, p), 1)
    return counts


def confusion_matrix(
    y_true: Sequence[int] | np.ndarray,
    y_pred: Sequence[int] | np.ndarray,
    labels: Sequence[Any],
    ax: Axes | None = None,
) -> Axes:
    """Heat map of the confusion counts, true class down, predicted class across.

    The diagonal dwarfs every mistake, so colours are drawn on a log scale and every
    off-diagonal count is written in its cell: the mistakes are the point.
    """
    from matplotlib.colors import LogNorm

    labels = list(labels)
    counts = confusion_counts(y_true, y_pred, len(labels))
    ax = _axes(ax, (6, 5))
    image = ax.imshow(np.maximum(counts, 0.5), cmap="Blues", norm=LogNorm(vmin=0.5, vmax=max(1, counts.max())))
    ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="count (log scale)")
    ax.set_xticks(range(len(labels)), [str(v) for v in labels])
    ax.set_yticks(range(len(labels)), [str(v) for v in labels])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = np.sqrt(max(1, counts.max()))
    for i in range(len(labels)):
        for j in range(len(labels)):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(counts[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if counts[i, j] > threshold else "black",
                )
    ax.set_title(f"confusion matrix ({counts.sum()} examples, {np.trace(counts)} correct)")
    return ax


def sample_grid(
    images: np.ndarray | Sequence[np.ndarray],
    labels: Sequence[Any],
    predictions: Sequence[Any] | None = None,
    ncols: int = 8,
    size: float = 1.2,
    title: str | None = None,
) -> Figure:
    """A grid of grayscale images titled with their labels (and predictions, wrong ones in red).

    Looking at the data, and at the mistakes, catches problems no metric shows:
    a transposed image, shifted labels, a digit that is really ambiguous.
    """
    images = [np.asarray(img).squeeze() for img in images]
    labels = _plain(labels)
    predictions = None if predictions is None else _plain(predictions)
    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if predictions is not None and len(predictions) != len(labels):
        raise ValueError(f"{len(predictions)} predictions but {len(labels)} labels")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.3), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= n:
            continue
        ax.imshow(images[k], cmap="gray_r")
        if predictions is None:
            ax.set_title(str(labels[k]), fontsize=9)
        else:
            wrong = predictions[k] != labels[k]
            ax.set_title(
                f"{labels[k]}→{predictions[k]}" if wrong else str(labels[k]),
                fontsize=9,
                color="tab:red" if wrong else "black",
            )
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def latency_cdf(
    latencies_ms: Mapping[str, Sequence[float] | np.ndarray],
    ax: Axes | None = None,
    marks: Sequence[float] = (50, 95, 99),
) -> Axes:
    """One latency CDF per variant, on a log time axis, with its percentiles marked.

    A CDF shows the whole distribution at once: where the body sits, how long the
    tail is, and whether two variants differ everywhere or only in the tail.
    """
    from course.serving.latency import ecdf, percentile

    ax = _axes(ax, (7, 4))
    for name, samples in latencies_ms.items():
        x, y = ecdf(samples)
        if x.size == 0:
            continue
        (line,) = ax.step(x, y, where="post", label=f"{name} (p95 {percentile(x, 95):.1f} ms)")
        for q in marks:
            ax.plot(percentile(x, q), q / 100, "o", color=line.get_color(), ms=4)
    for q in marks:
        ax.axhline(q / 100, color="grey", lw=0.6, ls=":")
    ax.set_xscale("log")
    ax.set_xlabel("latency (ms, log scale)")
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="lower right")
    return ax


def throughput_latency(
    curves: Mapping[str, Sequence[tuple[float, float]]], ax: Axes | None = None, ylabel: str = "p95 latency (ms)"
) -> Axes:
    """Latency against offered load, one curve per variant: where each one's knee is.

    Every service's curve is flat at low load and turns up near its capacity;
    optimizing moves the knee to the right (more load at the same latency) or the
    whole curve down (less latency at every load).
    """
    ax = _axes(ax, (7, 4))
    for name, points in curves.items():
        pts = sorted(points)
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=name)
    ax.set_xlabel("offered load (requests/s)")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.grid(alpha=0.3, which="both")
    ax.legend(loc="upper left")
    return ax
