"""For every lab: labs/ is what nbgrader builds, the solution gets full marks, the
untouched student notebook gets none, and every plausible wrong answer loses points."""

from __future__ import annotations

import json

import pytest

from course.machinery.labs import REGISTRY
from course.paths import LABS
from tests.conftest import mutants_of

pytestmark = pytest.mark.grading
LAB_IDS = [lab.id for lab in REGISTRY]


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_labs_folder_is_what_course_build_generates(course_copy, lab_id):
    built = sorted(p.name for p in (course_copy / "labs" / lab_id).glob("*.ipynb"))
    committed = sorted(p.name for p in (LABS / lab_id).glob("*.ipynb"))
    assert built == committed, "labs/ is out of date: run `course build` and commit labs/"
    for name in built:
        fresh = json.loads((course_copy / "labs" / lab_id / name).read_text())
        assert json.loads((LABS / lab_id / name).read_text()) == fresh, (
            f"labs/{lab_id}/{name} differs from the build: run `course build` and commit labs/"
        )


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_solution_gets_full_auto_graded_marks(graded, lab_id):
    outcome = graded[("solution", lab_id)]
    assert outcome.status == "graded", outcome.problems
    assert outcome.cells, "the lab has no auto-graded test cell"
    lost = {cell: score for cell, (score, best) in outcome.cells.items() if score < best}
    assert not lost, f"the solution loses points on {lost}"
    assert not outcome.problems


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_untouched_student_notebook_gets_zero(graded, lab_id):
    outcome = graded[("untouched", lab_id)]
    assert outcome.status == "graded", outcome.problems
    earned = {cell: score for cell, (score, _) in outcome.cells.items() if score > 0}
    assert not earned, f"the untouched notebook earns points on {earned}: a test passes without any work"


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_each_lab_has_at_least_two_wrong_answers_that_lose_points(graded, lab_id):
    mutants = mutants_of(lab_id)
    assert len(mutants) >= 2, f"{lab_id} needs at least two plausible wrong answers in its test module"
    smoke = graded[("smoke", lab_id)]
    for i, mutant in enumerate(mutants):
        wrong = graded[(f"wrong{i:02d}", lab_id)]
        assert wrong.status == "graded", wrong.problems
        for cell in mutant.loses:
            base_score, best = smoke.cells[cell]
            assert base_score == best, f"{cell} fails even without the mutation; the check proves nothing"
            assert wrong.cells[cell][0] < best, f"'{mutant.description}' still passes {cell}"
