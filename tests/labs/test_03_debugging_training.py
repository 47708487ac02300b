"""Lab 03: the five planted bugs, re-introduced one at a time, must each lose their own test cell and the
milestone; and the solution's milestone counts all five bugs fixed."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "03-debugging-training"

MUTANTS = [
    Mutant(
        "bug 1, data leak: the test set is drawn independently of the training set, so they share examples",
        cell="ex-bug-leak",
        old="order[n_train:n_train + n_test]",
        new="rng.choice(len(images), n_test, replace=False)",
        loses=["test-bug-leak", "test-milestone"],
    ),
    Mutant(
        "bug 2, no optimizer.zero_grad(): gradients accumulate across steps",
        cell="ex-bug-zero-grad",
        old="optimizer.zero_grad()",
        new="pass",
        loses=["test-bug-zero-grad", "test-milestone"],
    ),
    Mutant(
        "bug 3, probabilities (softmax) fed to cross_entropy instead of logits",
        cell="ex-bug-loss",
        old="nn.functional.cross_entropy(logits, y)",
        new="nn.functional.cross_entropy(torch.softmax(logits, dim=1), y)",
        loses=["test-bug-loss", "test-milestone"],
    ),
    Mutant(
        "bug 4, evaluation in training mode (no model.eval())",
        cell="ex-bug-eval",
        old="model.eval()",
        new="pass",
        loses=["test-bug-eval", "test-milestone"],
    ),
    Mutant(
        "bug 5, labels shifted by one: each image gets the previous example's label",
        cell="ex-bug-labels",
        old="yield x[idx], y[idx]",
        new="yield x[idx], y[idx - 1]",
        loses=["test-bug-labels", "test-milestone"],
    ),
]


def test_solution_fixes_all_five_bugs(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 5, found.describe()
