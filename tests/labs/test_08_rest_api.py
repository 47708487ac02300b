"""Lab 08: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "08-rest-api"

NAN_PASSES = """from pydantic import AfterValidator


def in_range(p):
    if p < 0 or p > 1:
        raise ValueError("pixels must be in [0, 1]")
    return p


Pixel = Annotated[float, AfterValidator(in_range)]"""

MUTANTS = [
    Mutant(
        "one global bucket: every client counts against the same limit",
        cell="ex-limiter",
        old="if self.window.hit(self.item, client):",
        new='if self.window.hit(self.item, "everyone"):',
        loses=["test-limiter", "test-milestone"],
    ),
    Mutant(
        "429 without Retry-After",
        cell="ex-limiter",
        old='            headers={"Retry-After": str(retry_after)},\n',
        new="",
        loses=["test-limiter", "test-milestone"],
    ),
    Mutant(
        "range checked by hand as `p < 0 or p > 1`, which NaN passes (every comparison with NaN is false)",
        cell="ex-validation",
        old="Pixel = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]",
        new=NAN_PASSES,
        loses=["test-validation", "test-milestone"],
    ),
    Mutant(
        "pixels outside [0, 1] accepted",
        cell="ex-validation",
        old="Field(ge=0.0, le=1.0, allow_inf_nan=False)",
        new="Field(allow_inf_nan=False)",
        loses=["test-validation", "test-milestone"],
    ),
    Mutant(
        "json.loads trusted: a malformed or empty body becomes a 500 (the fuzzer finds it too)",
        cell="ex-validation",
        old="    try:\n        data = json.loads(body)\n    except ValueError as exc:",
        new="    data = json.loads(body)\n    if False:",
        loses=["test-validation", "test-milestone", "test-fuzz"],
    ),
]


def test_solution_answers_every_request_correctly(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 100.0, found.describe()
