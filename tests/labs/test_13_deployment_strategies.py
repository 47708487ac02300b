"""Lab 13: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "13-deployment-strategies"

MUTANTS = [
    Mutant(
        "random per-request split instead of sticky hash buckets",
        cell="ex-split",
        old="return bucket(unit_id, salt, n_buckets) < round(share * n_buckets)",
        new="return __import__('random').random() < share",
        loses=["test-split", "test-canary"],
    ),
    Mutant(
        "guardrails compare error rate and latency only: an accuracy regression sails through",
        cell="ex-guardrails",
        old="if champion.accuracy - challenger.accuracy > guardrails.max_accuracy_drop:",
        new="if False:",
        loses=["test-guardrails", "test-canary"],
    ),
    Mutant(
        "sample size without the power term",
        cell="ex-sample-size",
        old=" + z_power * math.sqrt(p0 * (1 - p0) + p1 * (1 - p1))",
        new="",
        loses=["test-sample-size"],
    ),
    Mutant(
        "one-sided p-value reported as two-sided",
        cell="ex-ztest",
        old="p_value = 2 * norm.sf(np.abs(z))",
        new="p_value = norm.sf(np.abs(z))",
        loses=["test-ztest", "test-peeking"],
    ),
    Mutant(
        "unpooled standard error in the test",
        cell="ex-ztest",
        old="se = np.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))",
        new="se = np.sqrt(x_a / n_a * (1 - x_a / n_a) / n_a + x_b / n_b * (1 - x_b / n_b) / n_b)",
        loses=["test-ztest"],
    ),
]


def test_solution_gets_all_four_verdicts_right(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 4, found.describe()
