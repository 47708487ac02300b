"""Lab 07: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "07-model-packaging"

MUTANTS = [
    Mutant(
        "torch.export of a model left in training mode (dropout recorded as random)",
        cell="ex-export-program",
        old="    model.eval()\n",
        new="",
        loses=["test-export-program"],
    ),
    Mutant(
        "ONNX export with a fixed batch axis (the example's batch of 2 only)",
        cell="ex-onnx",
        old='dynamic_shapes=({0: torch.export.Dim("batch")},),',
        new="",
        loses=["test-onnx"],
    ),
    Mutant(
        "artifacts named by a random id instead of the content hash",
        cell="ex-content-address",
        old='path = store / f"{digest}.{ext}"',
        new="path = store / f\"{__import__('uuid').uuid4().hex}.{ext}\"",
        loses=["test-content-address"],
    ),
    Mutant(
        "loading skips the hash check",
        cell="ex-content-address",
        old="    data = path.read_bytes()\n",
        new="    return path.read_bytes()\n",
        loses=["test-content-address"],
    ),
    Mutant(
        "parity judged with a loose tolerance (1e-2)",
        cell="ex-parity",
        old="atol: float = 1e-5",
        new="atol: float = 1e-2",
        loses=["test-parity"],
    ),
]


def test_solution_milestone_is_far_below_the_bar(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured < 2e-6, found.describe()
