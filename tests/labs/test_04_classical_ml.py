"""Lab 04: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "04-classical-ml"

MUTANTS = [
    Mutant(
        "keeps the leaky `duration` column as a feature",
        cell="ex-features",
        old='LEAKY = ["duration"]',
        new="LEAKY = []",
        loses=["test-features"],
    ),
    Mutant(
        "fits the preprocessing on all rows before splitting into folds (a leak)",
        cell="ex-cv",
        old="model = clone(pipeline).fit(X.iloc[train_idx], y[train_idx])",
        new="model = clone(pipeline).fit(X, y)",
        loses=["test-cv"],
    ),
    Mutant(
        "shuffles the time-ordered split",
        cell="ex-time-split",
        old="return rows(X, slice(None, cut)), rows(X, slice(cut, None)), rows(y, slice(None, cut)), "
        "rows(y, slice(cut, None))",
        new="return train_test_split(X, y, test_size=len(X) - cut, random_state=0)",
        loses=["test-time-split"],
    ),
    Mutant(
        "calibrates on the rows the model was trained on",
        cell="ex-calibrate",
        old=".fit(X_cal, y_cal)",
        new=".fit(X_fit, y_fit)",
        loses=["test-calibrate"],
    ),
    Mutant(
        "ignores the costs and keeps the default threshold 0.5",
        cell="ex-threshold",
        old="return float(candidates[np.argmin(cost)])",
        new="return 0.5",
        loses=["test-threshold"],
    ),
]


def test_solution_milestone_reaches_the_course_target(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured >= 0.79, found.describe()
