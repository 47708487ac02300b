"""The suite's one execution per notebook, and the grading batch every lab's proof reads.

1. Each solution runs **once**, at its default profile, one lab at a time with every core
   (`course run`'s own path, `running.run_lab`). That executed notebook is the evidence:
   every cell ran without an error, nbgrader scores it from its outputs (full marks, in a
   real gradebook), and its milestone is read from it.
2. One parallel batch then grades, at the smoke profile, every lab's untouched release,
   its solution (the baseline each wrong answer is compared with) and each plausible wrong
   answer, with workers x torch threads = cores.

`COURSE_LABS=15,16` (or `make test LABS=15,16`) limits both to some labs. The time table
at the end shows each lab's execution, grading and wrong-answer seconds against its budget.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest

from course import milestones
from course.machinery import grading, machine, running, sandbox
from course.machinery.labs import BY_ID, REGISTRY, Lab, resolve
from course.paths import BUILD, LABS, SOLUTIONS
from course.runtime import cpu_count
from tests.support import Mutant, student_of, submit

GRADING_WORKERS = 2 if cpu_count() >= 2 else 1
# Wrong answers are our own code, so the suite may grade them without the sandbox where there is none;
# the tests of the sandbox itself then say why they cannot run (and fail on CI, which installs it).
SANDBOXED = sandbox.unavailable_reason() is None
TIMES: dict[str, dict[str, float]] = {}  # lab -> {"execution": s, "grading": s, "wrong answers": s}


def selected_labs() -> list[Lab]:
    names = [n.strip() for n in os.environ.get("COURSE_LABS", "").split(",") if n.strip()]
    return resolve(names) if names else list(REGISTRY)


LABS_UNDER_TEST = selected_labs()


def mutants_of(lab_id: str) -> list[Mutant]:
    return list(importlib.import_module(BY_ID[lab_id].test_module).MUTANTS)


def _add_time(lab_id: str, column: str, seconds: float) -> None:
    TIMES.setdefault(lab_id, {}).setdefault(column, 0.0)
    TIMES[lab_id][column] += seconds


# --- what the suite says when it starts, and its time table at the end ---------------------


def pytest_report_header(config) -> list[str]:
    threads = os.environ.get("COURSE_THREADS", str(cpu_count()))
    return [
        machine.measure().line(),
        f"labs under test: {', '.join(lab.id.split('-')[0] for lab in LABS_UNDER_TEST)}",
        f"solutions: one at a time, {threads} torch threads each (the machine to itself, as budgets assume); "
        f"grading batch: {GRADING_WORKERS} workers x {max(1, cpu_count() // GRADING_WORKERS)} thread "
        f"= {cpu_count()} cores",
        "student kernels: " + ("in the sandbox" if SANDBOXED else f"NOT sandboxed ({sandbox.unavailable_reason()})"),
    ]


def time_table() -> str:
    header = f"{'lab':<27}{'execution':>11}{'grading':>9}{'wrong answers':>15}{'budget':>8}"
    lines = ["Time per lab (s): the solution's one execution, nbgrader scoring it, and the smoke batch", header]
    for lab in LABS_UNDER_TEST:
        row = TIMES.get(lab.id)
        if not row:
            continue
        execution = row.get("execution", 0.0)
        flag = "  OVER BUDGET" if execution > lab.budget_s else ""
        lines.append(
            f"{lab.id:<27}{execution:>11.1f}{row.get('grading', 0.0):>9.1f}"
            f"{row.get('wrong answers', 0.0):>15.1f}{lab.budget_s:>8}{flag}"
        )
    lines.append(
        "(wrong answers: the untouched release, the smoke baseline and every wrong answer, summed over "
        f"{GRADING_WORKERS} parallel workers)"
    )
    return "\n".join(lines)


def pytest_terminal_summary(terminalreporter) -> None:
    if not TIMES:
        return
    terminalreporter.write_sep("=", "time table")
    terminalreporter.write_line(machine.measure().line())
    terminalreporter.write_line(time_table())
    out = BUILD / "test" / "times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(TIMES, indent=2))


# --- the scratch course ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory) -> Path:
    """A scratch course directory: solutions copied, labs built by nbgrader, a fresh gradebook."""
    root = tmp_path_factory.mktemp("course")
    shutil.copytree(SOLUTIONS, root / "solutions", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    (root / "grading").mkdir()
    grading.build(LABS_UNDER_TEST, root)
    return root


# --- 1. one execution per solution ------------------------------------------------------------


@pytest.fixture(scope="session")
def executed(course_copy) -> dict[str, list[running.LabResult]]:
    """Every solution, run once at the cpu profile by `course run`'s path, one lab at a time."""
    results = {}
    for lab in LABS_UNDER_TEST:
        results[lab.id] = running.run_lab(lab, "cpu", out=course_copy / "build" / "run")
        _add_time(lab.id, "execution", sum(r.seconds for r in results[lab.id]))
    return results


@pytest.fixture(scope="session")
def solution_scores(executed, course_copy) -> dict[str, grading.Outcome]:
    """nbgrader's scores of those executed notebooks, from their outputs, in the scratch gradebook."""
    scores = {}
    for lab_id, results in executed.items():
        dest = course_copy / grading.SUBMITTED / "solution" / lab_id
        dest.mkdir(parents=True, exist_ok=True)
        for result in results:
            shutil.copy(result.path, dest / result.notebook)
        start = time.perf_counter()
        scores[lab_id] = grading.score_outputs(course_copy, lab_id, "solution")
        _add_time(lab_id, "grading", time.perf_counter() - start)
    return scores


@pytest.fixture(scope="session")
def solution_milestone(executed) -> Callable[[str], milestones.Milestone]:
    """The milestone a lab's solution recorded in its one execution."""

    def read(lab_id: str) -> milestones.Milestone:
        if lab_id not in executed:
            pytest.skip(f"{lab_id} is not among COURSE_LABS")
        found = [
            m for result in executed[lab_id] for m in milestones.read(nbformat.read(result.path, as_version=4).cells)
        ]
        assert len(found) == 1, f"{lab_id}'s solution recorded {len(found)} milestones, expected exactly one"
        return found[0]

    return read


# --- 2. the grading batch at the smoke profile --------------------------------------------------


def _cells_any_mutant_loses(lab_id: str) -> set[str]:
    return {cell for mutant in mutants_of(lab_id) for cell in mutant.loses}


@pytest.fixture(scope="session")
def graded(course_copy) -> dict[tuple[str, str], grading.Outcome]:
    submitted = course_copy / grading.SUBMITTED
    for lab in LABS_UNDER_TEST:
        solutions = lab.solution_notebooks()
        submit(lab.release_notebooks(LABS), submitted / "untouched" / lab.id)
        submit(solutions, submitted / "smoke" / lab.id, profile="smoke", until=_cells_any_mutant_loses(lab.id))
        for i, mutant in enumerate(mutants_of(lab.id)):
            wrong = submitted / student_of(i) / lab.id
            submit(solutions, wrong, profile="smoke", mutant=mutant, until=set(mutant.loses))
    most = max(len(mutants_of(lab.id)) for lab in LABS_UNDER_TEST)
    students = ["untouched", "smoke", *(student_of(i) for i in range(most))]
    options = grading.Options(workers=GRADING_WORKERS, feedback=False, sandboxed=SANDBOXED)
    outcomes = grading.grade(course_copy, LABS_UNDER_TEST, students, options, rebuild=False)
    for outcome in outcomes:
        _add_time(outcome.lab, "wrong answers", outcome.seconds)
    return {(o.student, o.lab): o for o in outcomes}
