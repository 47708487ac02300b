"""For every lab: labs/ is what nbgrader builds, the solution runs without an error and gets
full marks from nbgrader, the untouched student notebook gets none, and every plausible
wrong answer loses points. The solution is executed once (tests/conftest.py: `executed`)."""

from __future__ import annotations

import json

import pytest

from course.paths import LABS
from tests.conftest import LABS_UNDER_TEST, mutants_of

pytestmark = pytest.mark.grading
LAB_IDS = [lab.id for lab in LABS_UNDER_TEST]


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
def test_every_cell_of_the_solution_runs_without_an_error(executed, lab_id):
    """What nbval's lax mode checked, on the one execution: no cell raised."""
    for result in executed[lab_id]:
        problems = result.crashed_cells + result.failed_tests
        assert not problems, f"{result.notebook}: " + "; ".join(problems)


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_solution_gets_full_auto_graded_marks_from_nbgrader(executed, solution_scores, lab_id):
    outcome = solution_scores[lab_id]
    assert outcome.status == "graded", outcome.problems
    assert outcome.cells, "the lab has no auto-graded test cell"
    lost = {cell: score for cell, (score, best) in outcome.cells.items() if score < best}
    assert not lost, f"the solution loses points on {lost}"
    assert not outcome.problems
    by_course_run = sum(r.score for r in executed[lab_id])
    assert by_course_run == outcome.auto_score, (
        f"course run scored the execution {by_course_run}, nbgrader's gradebook {outcome.auto_score}"
    )


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_untouched_student_notebook_gets_zero(graded, lab_id):
    outcome = graded[("untouched", lab_id)]
    assert outcome.status == "graded", outcome.problems
    assert outcome.cells, "the untouched notebook was not scored at all"
    earned = {cell: score for cell, (score, _) in outcome.cells.items() if score > 0}
    assert not earned, f"the untouched notebook earns points on {earned}: a test passes without any work"


@pytest.mark.parametrize("lab_id", LAB_IDS)
def test_each_plausible_wrong_answer_loses_the_cells_it_should(graded, lab_id):
    mutants = mutants_of(lab_id)
    needed = 3 if int(lab_id[:2]) >= 15 else 2
    assert len(mutants) >= needed, f"{lab_id} needs at least {needed} plausible wrong answers in its test module"
    smoke = graded[("smoke", lab_id)]
    for i, mutant in enumerate(mutants):
        assert mutant.loses, f"'{mutant.description}' names no test cell it must lose"
        wrong = graded[(f"wrong{i:02d}", lab_id)]
        assert wrong.status in ("graded", "review"), wrong.problems  # review: the integrity scan caught it too
        for cell in mutant.loses:
            base_score, best = smoke.cells[cell]
            assert base_score == best, f"{cell} fails even without the mutation; the check proves nothing"
            assert wrong.cells[cell][0] < best, f"'{mutant.description}' still passes {cell}"
