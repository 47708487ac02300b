"""Lab 06: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "06-papers"

MUTANTS = [
    Mutant(
        "attention scores divided by d_k instead of sqrt(d_k)",
        cell="ex-attention",
        old="/ math.sqrt(d_k)",
        new="/ d_k",
        loses=["test-attention", "test-milestone"],
    ),
    Mutant(
        "mask polarity inverted (True = blocked, nn.MultiheadAttention's convention)",
        cell="ex-attention",
        old="masked_fill(~mask",
        new="masked_fill(mask",
        loses=["test-attention", "test-milestone"],
    ),
    Mutant(
        "unbiased variance (torch.var's default) in layer norm",
        cell="ex-layer-norm",
        old="correction=0",
        new="correction=1",
        loses=["test-layer-norm", "test-layernorm-module", "test-milestone"],
    ),
    Mutant(
        "bias correction with step t + 1",
        cell="ex-adam",
        old='t = state["step"]',
        new='t = state["step"] + 1',
        loses=["test-adam", "test-milestone"],
    ),
    Mutant(
        "decoupled weight decay (AdamW) instead of torch.optim.Adam's L2",
        cell="ex-adam",
        old="g = g.add(p, alpha=weight_decay)",
        new="p.mul_(1 - lr * weight_decay)",
        loses=["test-adam", "test-milestone"],
    ),
]


def test_solution_milestone_is_at_rounding_level(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured < 1e-12, found.describe()
