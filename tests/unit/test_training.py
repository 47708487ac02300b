"""course.foundations.training: progress bars, evaluation, prediction and History, on tiny synthetic data."""

from __future__ import annotations

import io
from contextlib import redirect_stderr

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from course.foundations.training import History, evaluate, inference, predict, progress

torch.set_num_threads(1)


class FirstFeature(nn.Module):
    """Logits = inputs, so the prediction is the index of the largest feature; records grad mode."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.seen_grad_enabled: list[bool] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen_grad_enabled.append(torch.is_grad_enabled())
        return x * self.scale


def _loader(x: torch.Tensor, y: torch.Tensor, batch_size: int = 4) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def test_evaluate_counts_correct_predictions_over_uneven_batches() -> None:
    x = torch.eye(3).repeat(4, 1)  # 12 rows, argmax cycles 0, 1, 2
    y = torch.tensor([0, 1, 2] * 3 + [1, 1, 1])  # the last three: one right, two wrong
    model = FirstFeature()
    assert evaluate(model, _loader(x, y, batch_size=5)) == pytest.approx(10 / 12)
    assert model.seen_grad_enabled and not any(model.seen_grad_enabled), "evaluate must run under no_grad"


def test_evaluate_uses_eval_mode_and_restores_the_previous_mode() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 32), nn.Dropout(0.5), nn.BatchNorm1d(32), nn.Linear(32, 3))
    x, y = torch.randn(40, 6), torch.randint(0, 3, (40,))
    model.train()
    first = evaluate(model, _loader(x, y, batch_size=8))
    assert model.training, "evaluate must put a training model back into training mode"
    assert evaluate(model, _loader(x, y, batch_size=8)) == first, "dropout was active: not in eval mode"
    model.eval()
    evaluate(model, _loader(x, y))
    assert not model.training, "evaluate must leave an eval-mode model in eval mode"


def test_evaluate_rejects_an_empty_loader() -> None:
    with pytest.raises(ValueError, match="empty"):
        evaluate(FirstFeature(), [])


def test_predict_batches_and_matches_a_single_forward_pass() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.9))
    model.train()
    x = torch.randn(23, 5)
    with torch.no_grad():
        expected = model[0](x).argmax(dim=1)
    got = predict(model, x, batch_size=4)
    assert got.dtype == torch.long and got.shape == (23,)
    assert torch.equal(got, expected)
    assert model.training
    with pytest.raises(ValueError):
        predict(model, x, batch_size=0)
    assert predict(model, x[:0]).shape == (0,)


def test_inference_restores_mode_even_when_the_block_raises() -> None:
    model = nn.Linear(2, 2)
    model.train()
    with pytest.raises(RuntimeError), inference(model):
        assert not model.training and not torch.is_grad_enabled()
        raise RuntimeError("boom")
    assert model.training and torch.is_grad_enabled()


def test_history_records_steps_epochs_and_metrics() -> None:
    h = History()
    h.add_epoch([3.0, 1.0], test_acc=0.5)
    h.add_epoch(torch.tensor([0.5, 0.25, 0.75]).tolist(), test_acc=0.75)
    assert h.epochs == 2
    assert h.step_losses == [3.0, 1.0, 0.5, 0.25, 0.75]
    assert h.epoch_ends == [2, 5]
    assert h.epoch_losses() == pytest.approx([2.0, 0.5])
    assert h.metrics == {"test_acc": [0.5, 0.75]}
    assert all(type(v) is float for v in h.step_losses)


def test_progress_can_be_switched_off_and_otherwise_wraps(monkeypatch: pytest.MonkeyPatch) -> None:
    items = [1, 2, 3]
    monkeypatch.setenv("COURSE_PROGRESS", "0")
    assert progress(items) is items
    monkeypatch.setenv("COURSE_PROGRESS", "1")
    err = io.StringIO()
    with redirect_stderr(err):
        bar = progress(items, desc="unit", file=err, mininterval=0)
        assert list(bar) == items
    assert bar is not items and "unit" in err.getvalue()


def test_progress_does_not_change_a_seeded_dataloader_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """tqdm.auto iterates its input once when the bar is made; a DataLoader then draws from its generator."""
    data = TensorDataset(torch.arange(40.0), torch.arange(40))

    def epochs(wrap: bool) -> list[list[int]]:
        loader = DataLoader(data, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(3))
        err = io.StringIO()
        return [torch.cat([y for _, y in (progress(loader, file=err) if wrap else loader)]).tolist() for _ in range(2)]

    monkeypatch.setenv("COURSE_PROGRESS", "1")
    assert epochs(wrap=True) == epochs(wrap=False)
