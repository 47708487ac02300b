"""Lab 05: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "05-transformer-finetuning"

MUTANTS = [
    Mutant(
        "[CLS] vector instead of the mean the encoder was trained with",
        cell="ex-mean-pool",
        old="return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)",
        new="return last_hidden[:, 0]",
        loses=["test-mean-pool", "test-embeddings"],
    ),
    Mutant(
        "mean pooling that averages the padding too",
        cell="ex-mean-pool",
        old="return (last_hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)",
        new="return last_hidden.mean(dim=1)",
        loses=["test-mean-pool", "test-embeddings"],
    ),
    Mutant(
        "predictions in training mode (dropout on)",
        cell="ex-predict",
        old="with inference(model):",
        new="with torch.no_grad():",
        loses=["test-predict"],
    ),
    Mutant(
        "training step without zero_grad: gradients accumulate",
        cell="ex-train-step",
        old="    optimizer.zero_grad()\n",
        new="",
        loses=["test-train-step"],
    ),
    Mutant(
        "micro-averaged F1 (equals accuracy) instead of macro",
        cell="ex-metrics",
        old="return float(np.mean(2 * tp / (2 * tp + fp + fn)))",
        new="return float(2 * tp.sum() / (2 * tp.sum() + fp.sum() + fn.sum()))",
        loses=["test-metrics"],
    ),
]


def test_solution_fine_tuning_beats_the_frozen_baseline_clearly(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured >= 2.0, found.describe()
