"""Lab 17: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "17-eval-harness"

MUTANTS = [
    Mutant(
        "digit slices cut by the predicted digit (precision) instead of the true one",
        cell="ex-slices",
        old='members = {f"digit={d}": (golden.labels == d).numpy() for d in range(10)}',
        new='members = {f"digit={d}": (predictions == d).numpy() for d in range(10)}',
        loses=["test-slices"],
    ),
    Mutant(
        "an unpaired bootstrap: each model resampled on its own rows",
        cell="ex-paired",
        old="boot = d[rows].mean(axis=1)",
        new="boot = cand[rng.integers(0, d.size, size=(n_boot, d.size))].mean(axis=1) - champ[rows].mean(axis=1)",
        loses=["test-paired"],
    ),
    Mutant(
        "the SLO measured by one closed-loop client: a queue that only load builds is never seen",
        cell="ex-slo",
        old="run = loadgen.open_loop(url, body, rate=slo.rate, duration=slo.duration_s, seed=position)",
        new="run = loadgen.closed_loop(url, body, clients=1, duration=slo.duration_s)",
        loses=["test-slo"],
    ),
    Mutant(
        "the gate compares the mean difference with the margin: an inconclusive candidate passes",
        cell="ex-gate",
        old="if overall.low <= -policy.margin:",
        new="if overall.diff <= -policy.margin:",
        loses=["test-gate"],
    ),
    Mutant(
        "the slice rule checks the overall accuracy: a candidate that broke one slice passes",
        cell="ex-gate",
        old="drop = theirs.accuracy - mine.accuracy",
        new="drop = champion.accuracy - candidate.accuracy",
        loses=["test-gate", "test-milestone"],
    ),
    Mutant(
        "the alias is moved before the gate runs: a blocked candidate is already champion",
        cell="ex-promote",
        old="    report = harness(name, version, champion)\n",
        new='    client.set_registered_model_alias(name, "champion", version)  # release, then evaluate\n'
        "    report = harness(name, version, champion)\n",
        loses=["test-promote", "test-milestone"],
    ),
]


def test_solution_gets_all_three_gate_decisions_right(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 3, found.describe()
