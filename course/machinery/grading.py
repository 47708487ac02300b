"""nbgrader, driven for a cohort: build the release, autograde submissions in
parallel with time limits, and write grades and feedback.

nbgrader does the grading itself (restoring test cells, executing, scoring, the
gradebook, feedback HTML). What it lacks for a cohort on a small machine is
parallelism, a wall-clock limit per submission and a report that says in plain
words what went wrong with each submission; that is what this module adds.

Each submission is graded in its own process group, so a notebook that loops
forever is killed with its kernel and every other student is still graded.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config

from course.machinery import notebooks
from course.machinery.labs import BY_ID, Lab
from course.paths import ROOT
from course.runtime import cpu_count

SUBMITTED = "grading/submitted"


def nbgrader_config(root: Path = ROOT, cell_timeout: int = 300) -> Config:
    """The one nbgrader configuration; grading/nbgrader_config.py loads it too."""
    c = Config()
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = "mle-course"
    c.CourseDirectory.source_directory = "solutions"
    c.CourseDirectory.release_directory = "labs"
    c.CourseDirectory.submitted_directory = SUBMITTED
    c.CourseDirectory.autograded_directory = "grading/autograded"
    c.CourseDirectory.feedback_directory = "grading/feedback"
    c.CourseDirectory.db_url = f"sqlite:///{root / 'grading' / 'gradebook.db'}"
    c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.png", "mlruns", "*.db"]
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.Execute.timeout = cell_timeout
    c.Execute.interrupt_on_timeout = True
    c.Execute.kernel_name = "python3"
    return c


def _api(root: Path, cell_timeout: int = 300, from_outputs: bool = False):
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root, cell_timeout)
    if from_outputs:
        _score_recorded_outputs(config)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _score_recorded_outputs(config: Config) -> None:
    """nbgrader's autograde minus its two steps that discard a run: clearing outputs, executing again.

    For notebooks we executed ourselves (our own solutions, run once by `course run`'s path):
    nbgrader still restores every test cell from the gradebook and scores each one with its
    own rule, from the outputs that execution left. Never for a student's submission: those
    outputs are whatever the student's kernel chose to write.
    """
    from nbgrader import preprocessors as pp

    config.Autograde.sanitize_preprocessors = [
        pp.DeduplicateIds,
        pp.OverwriteKernelspec,
        pp.OverwriteCells,
        pp.CheckCellMetadata,
    ]
    config.Autograde.autograde_preprocessors = [pp.SaveAutoGrades, pp.AssignLatePenalties, pp.CheckCellMetadata]


def build(labs: list[Lab], root: Path = ROOT) -> list[Path]:
    """`nbgrader generate_assignment` for each lab: solutions/<id> -> labs/<id>."""
    api = _api(root)
    written = []
    for lab in labs:
        result = api.generate_assignment(lab.id, force=True, create=True)
        if not result["success"]:
            raise RuntimeError(f"nbgrader could not build {lab.id}:\n{result.get('error') or result.get('log')}")
        written.extend(sorted((root / "labs" / lab.id).glob("*.ipynb")))
    return written


# --- checking a submission before nbgrader sees it ---------------------------------


def _test_sources(path: Path) -> dict[str, str]:
    nb = notebooks.load(path)
    return {notebooks.nbgrader_meta(c).get("grade_id"): c.source for c in nb.cells if notebooks.is_test_cell(c)}


def precheck(submission: Path, release: Path, source: Path | None = None) -> tuple[list[str], bool]:
    """Problems an instructor should hear about, and whether nbgrader can grade it at all.

    nbgrader restores edited test cells from the source and scores deleted ones zero,
    but says so only in its log; we say it in the report. A test cell counts as
    unedited when it equals the released cell or the instructor's source cell.
    """
    problems: list[str] = []
    gradable = True
    for name in sorted(p.name for p in release.glob("*.ipynb")):
        path = submission / name
        if not path.exists():
            problems.append(f"{name} is missing from the submission: scored 0.")
            gradable = False
            continue
        try:
            seen = _test_sources(path)
        except notebooks.NotebookError as exc:
            problems.append(f"{exc} Scored 0; ask the student to resubmit.")
            gradable = False
            continue
        released = _test_sources(release / name)
        instructor = _test_sources(source / name) if source and (source / name).exists() else {}
        for grade_id, text in released.items():
            if grade_id not in seen:
                problems.append(f"{name}: test cell '{grade_id}' was deleted; it scores 0.")
            elif seen[grade_id] not in (text, instructor.get(grade_id)):
                problems.append(
                    f"{name}: test cell '{grade_id}' was edited; the original test was restored for grading."
                )
    return problems, gradable


# --- grading ---------------------------------------------------------------------


@dataclass
class Outcome:
    student: str
    lab: str
    score: float = 0.0
    max_score: float = 0.0
    status: str = "graded"  # graded | invalid | timeout | error
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> (auto score, max)

    @property
    def auto_score(self) -> float:
        return sum(score for score, _ in self.cells.values())

    @property
    def auto_max(self) -> float:
        return sum(best for _, best in self.cells.values())


def discover(root: Path, labs: list[Lab] | None = None, students: list[str] | None = None) -> list[tuple[str, str]]:
    """(student, lab) pairs found under grading/submitted/."""
    base = root / SUBMITTED
    wanted = {lab.id for lab in labs} if labs else None
    pairs = []
    for student_dir in sorted(p for p in base.glob("*") if p.is_dir()):
        if students and student_dir.name not in students:
            continue
        for lab_dir in sorted(p for p in student_dir.glob("*") if p.is_dir()):
            if lab_dir.name not in BY_ID:
                continue
            if wanted is None or lab_dir.name in wanted:
                pairs.append((student_dir.name, lab_dir.name))
    return pairs


def _worker_command(
    root: Path, lab: str, student: str, cell_timeout: int, feedback: bool = True, from_outputs: bool = False
) -> list[str]:
    flags = (["--no-feedback"] if not feedback else []) + (["--from-outputs"] if from_outputs else [])
    return [
        sys.executable,
        "-m",
        "course.machinery.grading",
        "--root",
        str(root),
        "--cell-timeout",
        str(cell_timeout),
        *flags,
        lab,
        student,
    ]


def _run_group(cmd: list[str], env: dict[str, str], limit: float) -> tuple[int | None, str]:
    """Run a command in its own process group; kill the whole group at the limit."""
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=limit)
        return proc.returncode, out
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out


def _scores(root: Path, lab: str, student: str) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Total score, maximum, and (auto score, max) of each auto-graded test cell.

    Written answers are left out of the per-cell map: nbgrader gives an untouched
    answer an automatic 0 and a written one no auto score, and either way a person
    grades it in formgrader.
    """
    from nbgrader.api import Gradebook

    tests = {grade_id for nb in (root / "labs" / lab).glob("*.ipynb") for grade_id in _test_sources(nb)}
    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        sub = gb.find_submission(lab, student)
        cells = {
            g.name: (float(g.auto_score), float(g.max_score))
            for nb in sub.notebooks
            for g in nb.grades
            if g.auto_score is not None and g.name in tests
        }
        return float(sub.score), float(sub.max_score), cells


def _max_score(root: Path, lab: str) -> float:
    from nbgrader.api import Gradebook

    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        return float(gb.find_assignment(lab).max_score)


def grade_one(
    root: Path,
    student: str,
    lab_id: str,
    limit: float,
    cell_timeout: int,
    threads: int,
    feedback: bool = True,
    from_outputs: bool = False,
) -> Outcome:
    lab = BY_ID[lab_id]
    outcome = Outcome(student, lab_id, max_score=_max_score(root, lab_id))
    problems, gradable = precheck(
        root / SUBMITTED / student / lab_id, root / "labs" / lab_id, root / "solutions" / lab_id
    )
    outcome.problems.extend(problems)
    if not gradable:
        outcome.status = "invalid"
        return outcome
    env = {
        **os.environ,
        "COURSE_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }
    start = time.perf_counter()
    for attempt in range(3):  # SQLite may be briefly locked by a sibling worker
        command = _worker_command(root, lab_id, student, cell_timeout, feedback, from_outputs)
        code, out = _run_group(command, env, limit)
        if code is None or "database is locked" not in out:
            break
        time.sleep(1 + attempt)
    outcome.seconds = time.perf_counter() - start
    if code is None:
        outcome.status = "timeout"
        outcome.problems.append(
            f"grading stopped after {limit:.0f} s (the limit for {lab.id}): the notebook runs too long or "
            "loops forever. Scored 0; ask the student to find the cell that never finishes."
        )
        return outcome
    if code != 0:
        outcome.status = "error"
        tail = out.strip().splitlines()[-3:]
        outcome.problems.append("nbgrader could not grade it: " + " | ".join(tail))
        return outcome
    outcome.score, outcome.max_score, outcome.cells = _scores(root, lab_id, student)
    if "CellTimeoutError" in out or "Interrupting kernel" in out:
        outcome.problems.append(
            f"a cell ran past {cell_timeout} s and was interrupted; it and the tests depending on it score 0."
        )
    return outcome


def grade(
    root: Path = ROOT,
    labs: list[Lab] | None = None,
    students: list[str] | None = None,
    workers: int | None = None,
    timeout: float | None = None,
    cell_timeout: int | None = None,
    rebuild: bool = True,
    feedback: bool = True,
) -> list[Outcome]:
    """Autograde every submission in parallel; write grades.csv and (unless told not to) feedback HTML."""
    pairs = discover(root, labs, students)
    if not pairs:
        raise SystemExit(f"No submissions found under {root / SUBMITTED}/<student>/<lab>/.")
    if rebuild:  # the gradebook must know each assignment's test cells before autograding
        build(sorted({BY_ID[lab] for _, lab in pairs}, key=lambda lab: lab.id), root)
    workers = workers or max(1, min(len(pairs), cpu_count()))
    threads = max(1, cpu_count() // workers)

    def task(pair: tuple[str, str]) -> Outcome:
        student, lab_id = pair
        budget = BY_ID[lab_id].budget_s
        limit = timeout or max(180.0, 4.0 * budget)
        cells = cell_timeout or int(min(limit, max(60, 2 * budget)))
        return grade_one(root, student, lab_id, limit, cells, threads, feedback)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(task, pairs))
    write_csv(outcomes, root / "grading" / "grades.csv")
    return outcomes


def score_outputs(root: Path, lab_id: str, student: str, limit: float = 300) -> Outcome:
    """Score an executed notebook already in grading/submitted/<student>/<lab>/ from its outputs.

    The one execution of a solution (the `course run` path) is the evidence: nbgrader
    restores the test cells and scores it, and writes the gradebook, without running it again.
    Only for notebooks we executed ourselves (see `_score_recorded_outputs`).
    """
    return grade_one(root, student, lab_id, limit, cell_timeout=60, threads=1, feedback=False, from_outputs=True)


def write_csv(outcomes: list[Outcome], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["student", "lab", "score", "max_score", "status", "seconds", "problems"])
        for o in outcomes:
            w.writerow(
                [
                    o.student,
                    o.lab,
                    f"{o.score:g}",
                    f"{o.max_score:g}",
                    o.status,
                    f"{o.seconds:.1f}",
                    " ".join(o.problems),
                ]
            )


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'student':<16} {'lab':<26} {'score':>11}  {'status':<8} {'time':>7}"]
    for o in outcomes:
        lines.append(f"{o.student:<16} {o.lab:<26} {o.score:>5g}/{o.max_score:<5g}  {o.status:<8} {o.seconds:>6.1f}s")
        lines.extend(f"    - {p}" for p in o.problems)
    return "\n".join(lines)


# --- the worker: one submission, in its own process ------------------------------


def _worker(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.machinery.grading")
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--cell-timeout", type=int, default=300)
    parser.add_argument("--no-feedback", action="store_true")
    parser.add_argument("--from-outputs", action="store_true", help="score recorded outputs; do not execute")
    parser.add_argument("lab")
    parser.add_argument("student")
    args = parser.parse_args(argv)
    api = _api(args.root, args.cell_timeout, from_outputs=args.from_outputs)
    result = api.autograde(args.lab, args.student, force=True, create=True)
    print(result.get("log", ""))
    if not result["success"]:
        print(result.get("error", ""))
        return 1
    if args.no_feedback:
        print(json.dumps({"ok": True}))
        return 0
    feedback = api.generate_feedback(args.lab, args.student, force=True)
    if not feedback["success"]:
        print("feedback failed:", feedback.get("error", ""))
    print(json.dumps({"ok": True}))
    return 0


if __name__ == "__main__":
    raise SystemExit(_worker(sys.argv[1:]))
