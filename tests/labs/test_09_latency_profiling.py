"""Lab 09: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "09-latency-profiling"

EVERY_20TH = """        self.requests = getattr(self, "requests", 0) + 1
        if self.requests % 20:  # "cheaper": read the file on one request in twenty
            return
"""

MUTANTS = [
    Mutant(
        "p95 computed as the mean plus two standard deviations (and p99 as mean + 3 sigma)",
        cell="ex-percentiles",
        old='return {f"p{q}": float(np.percentile(x, q)) for q in (50, 95, 99)}',
        new='return {"p50": float(np.median(x)), "p95": float(x.mean() + 2 * x.std()), '
        '"p99": float(x.mean() + 3 * x.std())}',
        loses=["test-percentiles"],
    ),
    Mutant(
        "off-by-one order statistic: the lower bound taken at 0-based index ppf(alpha) instead of ppf(alpha) - 1",
        cell="ex-ci",
        old="low_index = int(binom.ppf(alpha)) - 1",
        new="low_index = int(binom.ppf(alpha))",
        loses=["test-ci"],
    ),
    Mutant(
        "evenly spaced arrivals at the right mean rate instead of a Poisson process",
        cell="ex-schedule",
        old="    gaps = np.random.default_rng(seed).exponential(1.0 / rate, size=n - 1)\n",
        new="    gaps = np.full(n - 1, 1.0 / rate)\n",
        loses=["test-schedule"],
    ),
    Mutant(
        "the reload made rarer (every 20th request) instead of conditional on a change of the file",
        cell="ex-fixed",
        old="""        stamp = file_stamp(self.path)
        if stamp == self.stamp:  # a few microseconds: nothing was published, nothing to read
            return
        self.stamp = stamp
""",
        new=EVERY_20TH,
        loses=["test-fixed"],
    ),
    Mutant(
        "the regression 'fixed' by deleting the hot reload",
        cell="ex-fixed",
        old="        stamp = file_stamp(self.path)\n",
        new="        return\n        stamp = file_stamp(self.path)\n",
        loses=["test-fixed"],
    ),
]


def test_solution_fixes_the_regression(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured <= 1.10, found.describe()
