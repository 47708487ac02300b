"""Lab 14: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "14-distributed-training"

MUTANTS = [
    Mutant(
        "the rank is ignored: both ranks train on the same shard",
        cell="ex-shard",
        old="[rank::world_size]",
        new="[0::world_size]",
        loses=["test-shard", "test-milestone"],
    ),
    Mutant(
        "the offset is counted in local batches, so the shards drift away from the global batch",
        cell="ex-shard",
        old="start = step * global_batch",
        new="start = step * (global_batch // world_size)",
        loses=["test-shard", "test-milestone"],
    ),
    Mutant(
        "the loss is summed over ranks instead of averaged",
        cell="ex-global-mean",
        old="return total / dist.get_world_size()",
        new="return total",
        loses=["test-global-mean", "test-milestone"],
    ),
    Mutant(
        "different seeds per rank and no broadcast: the ranks train different models",
        cell="ex-by-hand",
        old="dist.broadcast(tensor.data, src=src)",
        new="pass",
        loses=["test-by-hand"],
    ),
    Mutant(
        "a per-rank sum instead of the local mean: gradients B/W times too large",
        cell="ex-worker",
        old="loss = F.cross_entropy(model(x), y)",
        new='loss = F.cross_entropy(model(x), y, reduction="sum")',
        loses=["test-train-step", "test-milestone"],
    ),
]


def test_solution_milestone_is_float64_rounding(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured < 1e-12, found.describe()
