"""Lab 11: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "11-gpu-performance"

MUTANTS = [
    Mutant(
        "the clock stops before the asynchronous device has finished (times the launch only)",
        cell="ex-measure",
        old="        wait()  # the work has finished: now the clock may stop\n",
        new="",
        loses=["test-measure"],
    ),
    Mutant(
        "mean instead of median (one outlier moves it)",
        cell="ex-measure",
        old="return float(statistics.median(times))",
        new="return float(statistics.mean(times))",
        loses=["test-measure"],
    ),
    Mutant(
        "bandwidth counted in elements, not bytes",
        cell="ex-throughput",
        old="moved = 3 * numel * c.element_size()",
        new="moved = 3 * numel",
        loses=["test-throughput"],
    ),
    Mutant(
        "multiply-adds (MACs) counted instead of FLOPs",
        cell="ex-flops",
        old="total += 2 * rows * module.in_features * module.out_features",
        new="total += rows * module.in_features * module.out_features",
        loses=["test-flops"],
    ),
    Mutant(
        "activations counted for one example, not the batch",
        cell="ex-roofline",
        old="batch * in_features + batch * out_features",
        new="in_features + out_features",
        loses=["test-roofline"],
    ),
]


def test_solution_milestone_passes_every_roofline_check(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == found.bar == 6, found.describe()
