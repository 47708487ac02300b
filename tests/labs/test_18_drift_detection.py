"""Lab 18: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "18-drift-detection"

MUTANTS = [
    Mutant(
        "PSI with the bins of the current window (each window measured with its own ruler)",
        cell="ex-psi",
        old="edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))",
        new="edges = np.unique(np.quantile(current, np.linspace(0, 1, bins + 1)[1:-1]))",
        loses=["test-psi"],
    ),
    Mutant(
        "PSI without an epsilon: an empty bin makes it infinite",
        cell="ex-psi",
        old="r, c = np.maximum(r, eps), np.maximum(c, eps)",
        new="r, c = r + 0.0, c + 0.0",
        loses=["test-psi"],
    ),
    Mutant(
        "an alert on any single p-value below 0.05 across 19 features (no correction for the number of tests)",
        cell="ex-tests",
        old="threshold = alpha / len(pvalues)",
        new="threshold = 0.05",
        loses=["test-tests"],
    ),
    Mutant(
        "chi-square on the raw category counts (a category seen 3 times makes an expected count near 0)",
        cell="ex-tests",
        old="table = category_table(reference[col], current[col], min_share)",
        new="table = pd.concat([reference[col].value_counts(), current[col].value_counts()], axis=1).fillna(0).T",
        loses=["test-tests"],
    ),
    Mutant(
        "domain classifier scored on rows it was trained on (in-sample AUC)",
        cell="ex-domain",
        old="model = LogisticRegression(max_iter=1000).fit(x[train], y[train])",
        new="model = LogisticRegression(max_iter=1000).fit(x, y)",
        loses=["test-domain"],
    ),
    Mutant(
        "an alarm on every flagged window (no persistence)",
        cell="ex-alert",
        old="return sum(self.recent) >= self.k",
        new="return bool(flagged)",
        loses=["test-alert"],
    ),
    Mutant(
        "a performance table that uses labels which have not arrived yet",
        cell="ex-performance",
        old='known = log[log["window"] <= now - delay]',
        new='known = log[log["window"] <= now]',
        loses=["test-performance"],
    ),
    Mutant(
        "retraining on the most recent windows, whose labels have not arrived",
        cell="ex-retrain",
        old="last_labelled = deploy_after - delay",
        new="last_labelled = deploy_after",
        loses=["test-retrain", "test-milestone"],
    ),
]


def test_solution_alarms_one_window_after_the_onset(solution_milestone):
    """A 2-of-3 rule cannot alarm earlier than one window after the onset; the solution does exactly that."""
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 1, found.describe()
