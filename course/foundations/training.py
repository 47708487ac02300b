"""Small training helpers the labs import: progress bars, evaluation, prediction, history.

The exercises (the training loop, the learner's own accuracy function) stay in the
notebooks; what lives here is what every lab needs the same way and what tests
need to trust: an evaluation that cannot be left in training mode by accident,
and a progress bar that stays out of graded output.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import nn

T = TypeVar("T")


def progress(iterable: Iterable[T], **kw: Any) -> Iterable[T]:
    """Wrap an iterable in a tqdm bar (a widget in Jupyter, text in a terminal).

    Set COURSE_PROGRESS=0 to turn every bar off: the grader and CI do, because a
    text bar writes to stderr and nbgrader reads stderr in a cell as a failure.
    """
    if os.environ.get("COURSE_PROGRESS", "1") == "0":
        return iterable
    # Not tqdm.auto: its asyncio mixin calls iter() on the iterable when the bar is made,
    # and a DataLoader then draws a seed from its generator for an iterator nobody uses,
    # so the shuffle order (and the trained model) would change with the bar switched on.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # autonotebook warns that it is "experimental"
        from tqdm.autonotebook import tqdm

    options: dict[str, Any] = {"mininterval": 0.5, "dynamic_ncols": True, "leave": True}
    options.update(kw)
    return tqdm(iterable, **options)


@contextmanager
def inference(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode and no autograd for the block, then the model's previous mode back.

    Dropout and batch norm behave differently in training mode, so an accuracy
    measured in it is noisy and wrong; restoring the mode lets a training loop
    call this between epochs without having to remember `model.train()`.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def evaluate(
    model: nn.Module, loader: Iterable[tuple[torch.Tensor, torch.Tensor]], device: torch.device | str = "cpu"
) -> float:
    """Accuracy in [0, 1] of a classifier's argmax over (inputs, labels) batches."""
    correct = total = 0
    with inference(model):
        for x, y in loader:
            y = y.to(device)
            correct += int((model(x.to(device)).argmax(dim=1) == y).sum())
            total += int(y.numel())
    if total == 0:
        raise ValueError("evaluate() got an empty loader: there is nothing to measure.")
    return correct / total


def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Predicted class of every row of `x`, on the CPU, computed in batches.

    Batching bounds memory for a whole test set; the inputs go to the model's own
    device so the caller does not have to know where the model lives.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, not {batch_size}")
    try:
        device = next(model.parameters()).device
    except StopIteration:  # a model without parameters runs where its inputs are
        device = x.device
    chunks = []
    with inference(model):
        for start in range(0, len(x), batch_size):
            chunks.append(model(x[start : start + batch_size].to(device)).argmax(dim=1).cpu())
    return torch.cat(chunks) if chunks else torch.empty(0, dtype=torch.long)


@dataclass
class History:
    """What one training run did: the loss of every step and metrics once per epoch.

    Plain lists, so a notebook can plot, print or assert on them without a logging
    framework. `epoch_ends[i]` is the number of steps done when epoch i finished.
    """

    step_losses: list[float] = field(default_factory=list)
    epoch_ends: list[int] = field(default_factory=list)
    metrics: dict[str, list[float]] = field(default_factory=dict)

    def add_epoch(self, losses: Iterable[float], **metrics: float) -> None:
        """Append one epoch's step losses and its end-of-epoch metrics (e.g. test_acc=0.98)."""
        self.step_losses.extend(float(v) for v in losses)
        self.epoch_ends.append(len(self.step_losses))
        for name, value in metrics.items():
            self.metrics.setdefault(name, []).append(float(value))

    @property
    def epochs(self) -> int:
        return len(self.epoch_ends)

    def epoch_losses(self) -> list[float]:
        """Mean step loss of each epoch (NaN for an epoch with no steps)."""
        means, start = [], 0
        for end in self.epoch_ends:
            chunk = self.step_losses[start:end]
            means.append(sum(chunk) / len(chunk) if chunk else float("nan"))
            start = end
        return means
