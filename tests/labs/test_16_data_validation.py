"""Lab 16: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "16-data-validation"

MUTANTS = [
    Mutant(
        "the schema coerces columns to their dtype instead of rejecting them (35.5 becomes 35, '41' becomes 41)",
        cell="ex-schema",
        old="strict=True, coerce=False)",
        new="strict=True, coerce=True)",
        loses=["test-schema"],
    ),
    Mutant(
        "validates eagerly (lazy=False): stops at the first failure instead of reporting them all",
        cell="ex-validate",
        old="schema.validate(batch, lazy=True)",
        new="schema.validate(batch, lazy=False)",
        loses=["test-validate"],
    ),
    Mutant(
        "hashes the index with the rows: a re-indexed copy of the same records gets another version",
        cell="ex-version",
        old="hash_pandas_object(ordered, index=False)",
        new="hash_pandas_object(ordered, index=True)",
        loses=["test-version"],
    ),
    Mutant(
        "compares the numeric features only: categories re-encoded or swapped by the service go unnoticed",
        cell="ex-skew",
        old="if name not in served.columns:",
        new="if name not in served.columns or not pd.api.types.is_numeric_dtype(reference[name]):",
        loses=["test-skew"],
    ),
    Mutant(
        "audits with in-sample predictions: the model has learned the wrong labels it is asked about",
        cell="ex-oof",
        old='return cross_val_predict(model, X, y, cv=folds, method="predict_proba")[:, 1]',
        new="return clone(model).fit(X, y).predict_proba(X)[:, 1]",
        loses=["test-oof"],
    ),
    Mutant(
        "blames the source with the most positives instead of the one whose labels the model contradicts",
        cell="ex-noise",
        old="return ratios.idxmax()",
        new='return table["positives"].idxmax()',
        loses=["test-noise"],
    ),
]


def test_solution_names_every_planted_violation(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 1.0, found.describe()
