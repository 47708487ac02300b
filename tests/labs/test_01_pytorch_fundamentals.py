"""Lab 01: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "01-pytorch-fundamentals"

MUTANTS = [
    Mutant(
        "forward instead of central differences",
        cell="ex-finite-diff",
        old="(f_plus - f_minus) / (2 * eps)",
        new="(f_plus - float(f(x))) / eps",
        loses=["test-finite-diff"],
    ),
    Mutant(
        "finite differences computed in float32",
        cell="ex-finite-diff",
        old="x = x.detach().to(torch.float64).clone()",
        new="x = x.detach().to(torch.float32).clone()",
        loses=["test-finite-diff"],
    ),
    Mutant(
        "regression loop never zeroes the gradients",
        cell="ex-linreg",
        old="p.grad.zero_()",
        new="pass",
        loses=["test-linreg"],
    ),
    Mutant(
        "weights shaped (d, 1): the loss silently broadcasts to (n, n)",
        cell="ex-linreg",
        old="torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)",
        new="torch.zeros(X.shape[1], 1, dtype=torch.float64, requires_grad=True)",
        loses=["test-linreg"],
    ),
    Mutant(
        "distances instead of squared distances",
        cell="ex-pairwise",
        old="return (diff ** 2).sum(dim=-1)",
        new="return (diff ** 2).sum(dim=-1).sqrt()",
        loses=["test-pairwise"],
    ),
    Mutant(
        "log-sum-exp without the max shift (overflows)",
        cell="ex-mlp-loss",
        old="m = z.max(dim=-1, keepdim=True).values",
        new="m = torch.zeros_like(z[..., :1])",
        loses=["test-mlp-loss"],
    ),
]


def test_solution_milestone_is_far_below_the_bar(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured < 1e-8, found.describe()
