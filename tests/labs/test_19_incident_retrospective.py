"""Lab 19: plausible wrong answers that must lose points, and the solution's milestone figure."""

from __future__ import annotations

import pytest

from tests.support import Mutant

pytestmark = pytest.mark.grading
LAB = "19-incident-retrospective"

MUTANTS = [
    Mutant(
        "onset taken as the first window where the error rises at all (the traffic shift, not the version)",
        cell="ex-root-cause",
        old='    answered = frame[(frame["model_version"] == guilty) & frame["status"].between(200, 299)]\n'
        '    onset = int(answered["window"].min())\n',
        new='    per_window = frame[frame["correct"].notna()].groupby("window")["correct"].mean()\n'
        "    onset = int(per_window.index[per_window < per_window.iloc[0]].min())\n",
        loses=["test-root-cause"],
    ),
    Mutant(
        "the guilty version picked by its raw error rate, without controlling for the traffic it served",
        cell="ex-root-cause",
        old="    guilty = max(versions, key=worst)\n",
        new='    guilty = max(versions, key=lambda v: 1 - frame.loc[frame["model_version"] == v, "correct"].mean())\n',
        loses=["test-root-cause"],
    ),
    Mutant(
        "excess error computed over all the traffic of each version, the same for both strata",
        cell="ex-excess",
        old="        stratum = frame[frame[flag] == value]\n",
        new="        stratum = frame\n",
        loses=["test-excess", "test-milestone"],
    ),
    Mutant(
        "labels joined on the wrong key: DataFrame.join matches the row index, not the request id",
        cell="ex-join",
        old='    frame = requests.merge(latest[["request_id", "label"]], on="request_id", how="left")\n',
        new='    frame = requests.join(latest[["label"]])\n',
        loses=["test-join"],
    ),
    Mutant(
        "windows numbered from 1: the onset of the root cause comes out one window late",
        cell="ex-read",
        old='"window": int((line["ts"] - t0) // width)',
        new='"window": int((line["ts"] - t0) // width) + 1',
        loses=["test-read", "test-milestone"],
    ),
    Mutant(
        "counter resets not handled: a restarted process gives a negative increase",
        cell="ex-metrics",
        old='"increase": value - previous if value >= previous else value',
        new='"increase": value - previous',
        loses=["test-metrics"],
    ),
    Mutant(
        "rollback to the version number below the champion's (version 3, itself rolled back)",
        cell="ex-rollback",
        old="    target = max(earlier)[1]\n",
        new="    target = str(int(current) - 1)\n",
        loses=["test-rollback", "test-milestone"],
    ),
]


def test_solution_finds_the_root_cause_and_rolls_back_cleanly(solution_milestone):
    found = solution_milestone(LAB)
    assert found.passed and found.measured == 4, found.describe()
