"""nbgrader, driven for a cohort: build the release, autograde submissions in
parallel with time limits, and write grades and feedback.

nbgrader does the grading itself (restoring test cells, scoring, the gradebook,
feedback HTML). What it lacks for a cohort is isolation (a student's kernel runs
with the grader's rights: here it runs in `course.machinery.sandbox`), integrity
checks (`course.machinery.integrity`), parallelism on one machine or a cluster, a
wall-clock limit per submission, grades that survive a crash, and a report that
says in plain words what went wrong with each submission.

Each submission is graded by a worker process in its own process group
(`course.machinery.autograde`), so a notebook that loops forever is killed with its
kernel, and every other student is still graded.
"""

from __future__ import annotations

import atexit
import functools
import os
import queue
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from traitlets.config import Config

from course.machinery import autograde, grades, notebooks, sandbox, workers
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


def tools_on_path() -> None:
    """nbgrader runs the `alembic` command of its environment: find it even when that is not activated."""
    here = str(Path(sys.executable).parent)
    if shutil.which("alembic") is None and here not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = here + os.pathsep + os.environ.get("PATH", "")


def _api(root: Path, cell_timeout: int = 300):
    tools_on_path()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    config = nbgrader_config(root, cell_timeout)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def recorded_outputs_config() -> dict[str, list]:
    """nbgrader's autograde minus its two steps that discard a run: clearing outputs, executing again.

    nbgrader still restores every test cell from the gradebook and scores each one with
    its own rule, from the outputs the execution left: our own solutions' one execution,
    and a submission's execution by the grader with its kernel in the sandbox (whose
    outputs the integrity checks have looked at).
    """
    from nbgrader import preprocessors as pp

    return {
        "Autograde.sanitize_preprocessors": [
            pp.DeduplicateIds,
            pp.OverwriteKernelspec,
            pp.OverwriteCells,
            pp.CheckCellMetadata,
        ],
        "Autograde.autograde_preprocessors": [pp.SaveAutoGrades, pp.AssignLatePenalties, pp.CheckCellMetadata],
    }


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
    status: str = "graded"  # graded | review | invalid | timeout | error
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cells: dict[str, tuple[float, float]] = field(default_factory=dict)  # grade_id -> (auto score, max)
    digest: str = ""  # of the submitted files: an unchanged submission is not graded again

    @property
    def auto_score(self) -> float:
        return sum(score for score, _ in self.cells.values())

    @property
    def auto_max(self) -> float:
        return sum(best for _, best in self.cells.values())


@dataclass(frozen=True)
class Options:
    """How a run grades: limits, parallelism, the sandbox, feedback."""

    timeout: float | None = None  # wall-clock seconds per submission (default: 4x the lab's budget)
    cell_timeout: int | None = None  # seconds per cell before it is interrupted
    workers: int | None = None
    sandboxed: bool = True
    feedback: bool = True
    force: bool = False  # grade again even what is unchanged since it was last graded
    memory_gib: float | None = None

    def limit_for(self, lab: Lab) -> float:
        return self.timeout or max(180.0, 4.0 * lab.budget_s)

    def cells_for(self, lab: Lab) -> int:
        return self.cell_timeout or int(min(self.limit_for(lab), max(60, 2 * lab.budget_s)))


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


def run_worker(
    root: Path,
    lab: str,
    student: str,
    settings: autograde.Settings,
    stages: list[str],
    limit: float,
    worker: workers.Worker | None = None,
) -> tuple[int | None, str, autograde.Result | None]:
    """Some stages of one submission in a worker process: `worker` (warm, reused), or a fresh one."""
    own = worker is None
    worker = worker or workers.Worker()
    try:
        return worker.run(workers.job(root, lab, student, settings, stages), limit)
    finally:
        if own:
            worker.close()


def _scores(root: Path, lab: str, student: str) -> tuple[float, float, dict[str, tuple[float, float]]]:
    """Total score, maximum, and (auto score, max) of each auto-graded test cell.

    Written answers are left out of the per-cell map: nbgrader gives an untouched
    answer an automatic 0 and a written one no auto score, and either way a person
    grades it in formgrader.
    """
    from nbgrader.api import Gradebook

    tools_on_path()
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

    tools_on_path()
    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        return float(gb.find_assignment(lab).max_score)


def explain(result: autograde.Result, settings: autograde.Settings) -> list[str]:
    """What the execution and the integrity checks saw, in words an instructor can act on."""
    lines = []
    for name, report in result.reports.items():
        if report["stopped_at"]:
            why = f"used {report['limit_hit']}" if report["limit_hit"] else "stopped (it died or exited)"
            lines.append(f"{name}: the kernel {why} at {report['stopped_at']}; scored what ran before it.")
        if report["timed_out"]:
            lines.append(
                f"{name}: {', '.join(report['timed_out'])} ran past {settings.cell_timeout} s and was interrupted; "
                "it and the tests depending on it score 0."
            )
        if report["memory_errors"]:
            gib = settings.limits.get("memory_gib", 4.0)
            lines.append(f"{name}: {', '.join(report['memory_errors'])} ran out of its {gib:g} GiB of memory.")
    if result.review:
        lines.append(
            "flagged for review, automatic points withheld until a person checks it in formgrader: "
            + "; ".join(result.findings)
        )
    return lines


def grade_one(
    root: Path,
    student: str,
    lab_id: str,
    settings: autograde.Settings,
    limit: float,
    worker: workers.Worker | None = None,
) -> Outcome:
    submission = root / SUBMITTED / student / lab_id
    outcome = Outcome(student, lab_id, max_score=_max_score(root, lab_id), digest=grades.digest(submission))
    problems, gradable = precheck(submission, root / "labs" / lab_id, root / "solutions" / lab_id)
    outcome.problems.extend(problems)
    if not gradable:
        outcome.status = "invalid"
        return outcome
    start = time.perf_counter()
    code, out, result = run_worker(root, lab_id, student, settings, ["sanitize", "execute", "score"], limit, worker)
    outcome.seconds = time.perf_counter() - start
    outcome = _finish(root, outcome, code, out, result, settings, limit)
    if result is None:  # it never reached scoring (it ran out of time, or broke the worker): still read it
        flagged = autograde.static_findings(root, lab_id, student)
        if flagged:
            outcome.status = "review"
            outcome.problems.append("flagged for review: " + "; ".join(flagged))
    return outcome


def _finish(
    root: Path,
    outcome: Outcome,
    code: int | None,
    out: str,
    result: autograde.Result | None,
    settings: autograde.Settings,
    limit: float,
) -> Outcome:
    if code is None:
        outcome.status = "timeout"
        outcome.problems.append(
            f"grading stopped after {limit:.0f} s (the limit for {outcome.lab}): the notebook runs too long or "
            "loops forever. Scored 0; ask the student to find the cell that never finishes."
        )
        return outcome
    if code != 0 or result is None:
        outcome.status = "error"
        tail = out.strip().splitlines()[-3:]
        outcome.problems.append("nbgrader could not grade it: " + " | ".join(tail))
        return outcome
    outcome.score, outcome.max_score, outcome.cells = _scores(root, outcome.lab, outcome.student)
    outcome.problems.extend(explain(result, settings))
    outcome.status = "review" if result.review else "graded"
    return outcome


def _settings(lab: Lab, options: Options, threads: int) -> autograde.Settings:
    limits = sandbox.Limits.for_lab(lab.budget_s, threads, options.memory_gib or lab.memory_gib)
    return autograde.Settings(
        cell_timeout=options.cells_for(lab),
        threads=threads,
        sandboxed=options.sandboxed,
        feedback=options.feedback,
        limits=asdict(limits),
    )


def require_sandbox(options: Options) -> None:
    """Refuse to run untrusted code without a sandbox, unless the instructor said so explicitly."""
    if not options.sandboxed:
        return
    reason = sandbox.unavailable_reason()
    if reason:
        raise SystemExit(
            f"Refusing to grade: student code would run with your rights, next to the solutions, the gradebook "
            f"and every other submission, because {reason}. Install the sandbox, or pass --no-sandbox to grade "
            "work you trust (your own solutions) without one."
        )


def grade(
    root: Path = ROOT,
    labs: list[Lab] | None = None,
    students: list[str] | None = None,
    options: Options | None = None,
    rebuild: bool = True,
    cluster: str | None = None,
) -> list[Outcome]:
    """Autograde every submission in parallel; keep grades.csv, results and feedback for every lab graded."""
    options = options or Options()
    require_sandbox(options)
    pairs = discover(root, labs, students)
    if not pairs:
        raise SystemExit(f"No submissions found under {root / SUBMITTED}/<student>/<lab>/.")
    if rebuild:  # the gradebook must know each assignment's test cells before autograding
        build(sorted({BY_ID[lab] for _, lab in pairs}, key=lambda lab: lab.id), root)
    done = {} if options.force else grades.unchanged(root, pairs)
    todo = [pair for pair in pairs if pair not in done]
    parallel = options.workers or max(1, min(len(todo) or 1, cpu_count()))
    threads = max(1, cpu_count() // parallel)
    if cluster:
        from course.machinery import cluster as fanout

        outcomes = fanout.grade(root, todo, options, cluster, threads)
    else:
        outcomes = _grade_here(root, todo, options, parallel, threads)
    by_pair = {**done, **{(o.student, o.lab): o for o in outcomes}}
    return [by_pair[pair] for pair in pairs]


def _grade_here(
    root: Path, pairs: list[tuple[str, str]], options: Options, parallel: int, threads: int
) -> list[Outcome]:
    """`parallel` warm workers fed from one queue of submissions; each kernel claims a sandbox uid of its own."""
    idle: queue.Queue[workers.Worker] = queue.Queue()
    pool = [workers.Worker() for _ in range(parallel)]
    for worker in pool:
        idle.put(worker)

    def task(pair: tuple[str, str]) -> Outcome:
        student, lab_id = pair
        lab, worker = BY_ID[lab_id], idle.get()
        try:
            outcome = grade_one(root, student, lab_id, _settings(lab, options, threads), options.limit_for(lab), worker)
        finally:
            idle.put(worker)
        grades.record(root, outcome)  # at once: a crash later loses nothing already graded
        return outcome

    try:
        with ThreadPoolExecutor(max_workers=parallel) as executor:
            return list(executor.map(task, pairs))
    finally:
        for worker in pool:
            worker.close()


def score_outputs(root: Path, lab_id: str, student: str, limit: float = 300) -> Outcome:
    """Score notebooks we executed ourselves, already in grading/submitted/<student>/<lab>/, from their outputs.

    The one execution of a solution (the `course run` path) is the evidence: nbgrader
    restores the test cells and scores it into the gradebook without running it again.
    """
    outcome = Outcome(student, lab_id, max_score=_max_score(root, lab_id))
    settings = autograde.Settings(cell_timeout=60, sandboxed=False, feedback=False)
    start = time.perf_counter()
    executed = root / autograde.EXECUTED / student / lab_id
    shutil.rmtree(executed, ignore_errors=True)
    shutil.copytree(root / SUBMITTED / student / lab_id, executed)
    code, out, result = run_worker(root, lab_id, student, settings, ["score"], limit, _scoring_worker())
    outcome.seconds = time.perf_counter() - start
    return _finish(root, outcome, code, out, result, settings, limit)


@functools.cache
def _scoring_worker() -> workers.Worker:
    """One warm worker for every `score_outputs` call of a process (the suite scores 22 solutions in a row)."""
    worker = workers.Worker()
    atexit.register(worker.close)
    return worker


def report(outcomes: list[Outcome]) -> str:
    lines = [f"{'student':<16} {'lab':<26} {'score':>11}  {'status':<8} {'time':>7}"]
    for o in outcomes:
        lines.append(f"{o.student:<16} {o.lab:<26} {o.score:>5g}/{o.max_score:<5g}  {o.status:<8} {o.seconds:>6.1f}s")
        lines.extend(f"    - {p}" for p in o.problems)
    return "\n".join(lines)
