"""A cohort's grading: nothing lost between runs or labs, nothing graded twice, and the same
grades when the executions fan out over a Dask cluster (a local one, on 127.0.0.1)."""

from __future__ import annotations

import csv
import time

import pytest

from course.machinery import grading
from course.machinery.labs import BY_ID
from tests.conftest import SANDBOXED
from tests.support import Mutant, submit

pytestmark = pytest.mark.grading
LAB = BY_ID["01-pytorch-fundamentals"]
WRONG = Mutant("weights never zeroed", cell="ex-linreg", old="p.grad.zero_()", new="pass")
STUDENTS = ["cohort-right", "cohort-wrong", "cohort-blank"]


def _rows(course_copy) -> dict[tuple[str, str], dict]:
    with (course_copy / "grading" / "grades.csv").open() as fh:
        return {(r["student"], r["lab"]): r for r in csv.DictReader(fh)}


@pytest.fixture(scope="module")
def cohort(course_copy):
    if not (course_copy / "labs" / LAB.id).exists():
        grading.build([LAB], course_copy)
    base = course_copy / grading.SUBMITTED
    submit(LAB.solution_notebooks(), base / "cohort-right" / LAB.id, profile="smoke")
    submit(LAB.solution_notebooks(), base / "cohort-wrong" / LAB.id, profile="smoke", mutant=WRONG)
    submit(LAB.release_notebooks(), base / "cohort-blank" / LAB.id, profile="smoke")
    options = grading.Options(workers=2, feedback=False, sandboxed=SANDBOXED)
    here = {o.student: o for o in grading.grade(course_copy, [LAB], STUDENTS, options, rebuild=False)}
    start = time.perf_counter()
    again = {o.student: o for o in grading.grade(course_copy, [LAB], STUDENTS, options, rebuild=False)}
    again_s = time.perf_counter() - start
    forced = grading.Options(workers=2, feedback=False, sandboxed=SANDBOXED, force=True)
    cluster = {
        o.student: o for o in grading.grade(course_copy, [LAB], STUDENTS, forced, rebuild=False, cluster="local:2")
    }
    return here, again, again_s, cluster


def test_the_three_students_get_what_they_earned(cohort):
    here = cohort[0]
    assert here["cohort-right"].auto_score == here["cohort-right"].auto_max > 0
    assert 0 < here["cohort-wrong"].auto_score < here["cohort-right"].auto_score
    assert here["cohort-blank"].auto_score == 0


def test_an_unchanged_submission_is_not_graded_again(cohort):
    here, again, again_s, _ = cohort
    assert again_s < 20, f"a rerun over unchanged submissions took {again_s:.0f} s: it graded them again"
    for student in STUDENTS:
        assert again[student].cells == here[student].cells
        assert any("unchanged since it was last graded" in p for p in again[student].problems)


def test_a_dask_cluster_gives_the_same_grades(cohort):
    here, cluster = cohort[0], cohort[3]
    for student in STUDENTS:
        assert cluster[student].status == here[student].status, cluster[student].problems
        assert cluster[student].cells == here[student].cells, student


def test_grades_csv_keeps_every_lab_ever_graded(cohort, course_copy):
    """Grading one lab used to rewrite grades.csv with that lab's rows only."""
    other = BY_ID["06-papers"]
    if not (course_copy / "labs" / other.id).exists():
        grading.build([other], course_copy)
    submit(other.release_notebooks(), course_copy / grading.SUBMITTED / "cohort-blank" / other.id, profile="smoke")
    options = grading.Options(workers=1, feedback=False, sandboxed=SANDBOXED)
    grading.grade(course_copy, [other], ["cohort-blank"], options, rebuild=False)
    rows = _rows(course_copy)
    assert ("cohort-blank", other.id) in rows and ("cohort-right", LAB.id) in rows, sorted(rows)
