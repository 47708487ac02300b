"""Session fixtures for the nbgrader round trip.

Grading is the slow part of the suite, so every submission the tests need (each
lab's solution, its untouched student notebook, a smoke-sized solution and each
plausible wrong answer) is graded in one parallel `course.machinery.grading.grade` call, the
same code path as an instructor's `course grade`.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from course import milestones
from course.machinery import grading
from course.machinery.labs import REGISTRY
from course.paths import LABS, SOLUTIONS
from tests.support import Mutant, student_of, submit


def lab_module(lab_id: str) -> str:
    return "tests.labs.test_" + lab_id.replace("-", "_")


def mutants_of(lab_id: str) -> list[Mutant]:
    return list(importlib.import_module(lab_module(lab_id)).MUTANTS)


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """A scratch course directory: solutions copied, labs built by nbgrader, a fresh gradebook."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(SOLUTIONS, root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "grading").mkdir()
    grading.build(list(REGISTRY), root)
    return root


@pytest.fixture(scope="session")
def graded(course_copy) -> dict[tuple[str, str], grading.Outcome]:
    submitted = course_copy / grading.SUBMITTED
    for lab in REGISTRY:
        solutions = lab.solution_notebooks()
        submit(solutions, submitted / "solution" / lab.id)
        submit(lab.release_notebooks(LABS), submitted / "untouched" / lab.id)
        submit(solutions, submitted / "smoke" / lab.id, profile="smoke")
        for i, mutant in enumerate(mutants_of(lab.id)):
            submit(solutions, submitted / student_of(i) / lab.id, profile="smoke", mutant=mutant)
    outcomes = grading.grade(course_copy, workers=2, rebuild=False)
    return {(o.student, o.lab): o for o in outcomes}


@pytest.fixture(scope="session")
def solution_milestone(graded, course_copy) -> Callable[[str], milestones.Milestone]:
    """The milestone a lab's solution recorded when nbgrader graded it."""

    def read(lab_id: str) -> milestones.Milestone:
        executed = sorted((course_copy / "grading" / "autograded" / "solution" / lab_id).glob("*.ipynb"))
        found = [m for path in executed for m in milestones.read(nbformat.read(path, as_version=4).cells)]
        assert len(found) == 1, f"{lab_id}'s solution recorded {len(found)} milestones, expected exactly one"
        return found[0]

    return read
