"""A cohort's real submissions: broken JSON, a deleted or edited test, a cell that
loops forever, a notebook that runs past its limit. Each gets a clear line in the
report and zero for what it broke, and every other student is still graded."""

from __future__ import annotations

import nbformat
import pytest

from course.machinery import grading
from course.machinery.labs import BY_ID
from course.machinery.notebooks import is_test_cell, nbgrader_meta
from tests.conftest import SANDBOXED
from tests.support import set_profile, submit

pytestmark = pytest.mark.grading
LAB = BY_ID["01-pytorch-fundamentals"]


def smoke(path):
    """The solution at the smoke profile: no solution runs twice at the cpu profile in one suite."""
    nb = nbformat.read(path, as_version=4)
    set_profile(nb, "smoke")
    return nb


def _first_cells(nb, predicate, n=1):
    return [c for c in nb.cells if predicate(c)][:n]


@pytest.fixture(scope="module")
def cohort(course_copy):
    base = course_copy / grading.SUBMITTED
    if not (course_copy / "labs" / LAB.id).exists():  # COURSE_LABS left lab 01 out of the scratch course
        grading.build([LAB], course_copy)
    solution = LAB.solution_notebooks()
    name = solution[0].name

    submit(solution, base / "bad-json" / LAB.id, profile="smoke")
    (base / "bad-json" / LAB.id / name).write_text('{"cells": [ {"cell_type": "code",,')

    nb = smoke(solution[0])
    deleted = _first_cells(nb, is_test_cell)[0]
    nb.cells.remove(deleted)
    (base / "deleted-test" / LAB.id).mkdir(parents=True)
    nbformat.write(nb, base / "deleted-test" / LAB.id / name)

    nb = smoke(solution[0])
    edited = _first_cells(nb, is_test_cell)[0]
    edited.source = "assert True  # the student made the test pass"
    (base / "edited-test" / LAB.id).mkdir(parents=True)
    nbformat.write(nb, base / "edited-test" / LAB.id / name)

    nb = smoke(solution[0])
    looping = _first_cells(nb, lambda c: nbgrader_meta(c).get("solution"))[-1]
    looping.source = "while True:\n    pass\n" + looping.source
    (base / "loops" / LAB.id).mkdir(parents=True)
    nbformat.write(nb, base / "loops" / LAB.id / name)

    nb = smoke(solution[0])
    for cell in _first_cells(nb, lambda c: nbgrader_meta(c).get("solution"), n=8):
        cell.source = "import time\ntime.sleep(7)\n" + cell.source
    (base / "too-slow" / LAB.id).mkdir(parents=True)
    nbformat.write(nb, base / "too-slow" / LAB.id / name)

    submit(solution, base / "good" / LAB.id, profile="smoke")
    students = ["bad-json", "deleted-test", "edited-test", "loops", "too-slow", "good"]
    options = grading.Options(workers=2, timeout=40, cell_timeout=8, sandboxed=SANDBOXED)
    outcomes = grading.grade(course_copy, [LAB], students, options, rebuild=False)
    return {o.student: o for o in outcomes}, deleted, edited


def test_invalid_json_is_reported_and_scores_zero(cohort):
    outcome = cohort[0]["bad-json"]
    assert outcome.status == "invalid" and outcome.score == 0
    assert any("not valid JSON" in p and "resubmit" in p for p in outcome.problems), outcome.problems


def test_deleted_test_cell_is_named_and_scores_zero(cohort):
    outcomes, deleted, _ = cohort
    outcome = outcomes["deleted-test"]
    grade_id = nbgrader_meta(deleted)["grade_id"]
    assert any(f"'{grade_id}' was deleted" in p for p in outcome.problems), outcome.problems
    assert outcome.status == "graded"
    assert outcome.cells.get(grade_id, (0.0, 0.0))[0] == 0
    assert outcome.auto_score < outcomes["good"].auto_score


def test_edited_test_cell_is_restored_and_reported(cohort):
    outcomes, _, edited = cohort
    outcome = outcomes["edited-test"]
    grade_id = nbgrader_meta(edited)["grade_id"]
    assert any(f"'{grade_id}' was edited" in p for p in outcome.problems), outcome.problems
    assert outcome.status == "graded" and outcome.auto_score == outcomes["good"].auto_score


def test_a_looping_cell_is_interrupted_and_only_what_it_broke_scores_zero(cohort):
    outcomes, _, _ = cohort
    outcome = outcomes["loops"]
    assert outcome.status == "graded", outcome.problems
    assert any("interrupted" in p for p in outcome.problems), outcome.problems
    assert 0 < outcome.auto_score < outcomes["good"].auto_score


def test_a_notebook_past_its_time_limit_is_stopped_and_reported(cohort):
    outcome = cohort[0]["too-slow"]
    assert outcome.status == "timeout" and outcome.score == 0
    assert any("grading stopped after 40 s" in p for p in outcome.problems), outcome.problems


def test_everyone_else_is_still_graded_in_full(cohort, course_copy):
    good = cohort[0]["good"]
    assert good.status == "graded" and good.auto_score == good.auto_max > 0
    csv_text = (course_copy / "grading" / "grades.csv").read_text()
    for student in ("bad-json", "deleted-test", "edited-test", "loops", "too-slow", "good"):
        assert f"\n{student},{LAB.id}," in csv_text
    feedback = list((course_copy / "grading" / "feedback" / "good" / LAB.id).glob("*.html"))
    assert feedback, "the graded student gets an HTML feedback file"
