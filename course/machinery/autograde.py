"""One submission through nbgrader, with its kernel in the sandbox: the grader's worker process.

nbgrader's own autograde does three things in one go: sanitize (clear outputs, restore
the test cells, hidden tests included, from the gradebook), execute, and score into the
gradebook. Here they are split, so that the untrusted part runs where it can harm no one
and everything that writes the gradebook runs after the kernel is gone:

1. `sanitize`: nbgrader's sanitize step alone, into grading/autograded/<student>/<lab>/.
2. `execute`: `course.machinery.execution` runs that notebook, its kernel in the sandbox,
   into grading/executed/<student>/<lab>/ (on this machine, or on a cluster worker).
3. `score`: nbgrader scores the executed notebook from its outputs into the gradebook;
   then the integrity checks (`course.machinery.integrity`, and what the execution saw)
   can withhold the automatic points for review; then the feedback HTML.

`python -m course.machinery.grading`'s worker runs the stages it is told and prints
one JSON line that the grader reads.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from course.machinery import execution, integrity, notebooks, sandbox

EXECUTED = "grading/executed"


@dataclass
class Settings:
    """How one submission is graded; sent to the worker as JSON."""

    cell_timeout: int = 300
    threads: int = 1
    sandboxed: bool = True
    feedback: bool = True
    limits: dict = field(default_factory=dict)  # sandbox.Limits fields


@dataclass
class Result:
    """What the worker tells the grader."""

    reports: dict[str, dict] = field(default_factory=dict)  # notebook -> execution.Report fields
    findings: list[str] = field(default_factory=list)
    review: bool = False


def _cache_schema_version() -> None:
    """nbgrader asks the `alembic` command for its schema version each time it opens the gradebook.

    That is a new Python process (about a second on a busy machine) several times per
    submission, for an answer that depends only on the installed nbgrader: ask once.
    """
    import functools

    import nbgrader.api

    if not hasattr(nbgrader.api.get_alembic_version, "cache_info"):
        nbgrader.api.get_alembic_version = functools.lru_cache(maxsize=1)(nbgrader.api.get_alembic_version)


def _api(root: Path, cell_timeout: int, **overrides):
    from course.machinery.grading import tools_on_path

    tools_on_path()
    _cache_schema_version()
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory

    from course.machinery.grading import nbgrader_config

    config = nbgrader_config(root, cell_timeout)
    for key, value in overrides.items():
        section, name = key.split(".")
        setattr(getattr(config, section), name, value)
    return NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)


def _check(result: dict, what: str) -> None:
    if not result["success"]:
        raise RuntimeError(f"nbgrader could not {what}: {result.get('error') or result.get('log', '')[-500:]}")


def sanitize(root: Path, lab: str, student: str, settings: Settings) -> None:
    """nbgrader's first step only: outputs cleared, test cells and hidden tests restored."""
    api = _api(root, settings.cell_timeout, **{"Autograde.autograde_preprocessors": []})
    _check(api.autograde(lab, student, force=True, create=True), "prepare the submission")


def execute(root: Path, lab: str, student: str, settings: Settings) -> dict[str, execution.Report]:
    """Each sanitized notebook, executed with its kernel in the sandbox, into grading/executed/."""
    source = root / "grading" / "autograded" / student / lab
    dest = root / EXECUTED / student / lab
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    submitted = root / "grading" / "submitted" / student / lab / "timestamp.txt"
    if submitted.exists():
        shutil.copy(submitted, dest / "timestamp.txt")
    reports = {}
    for path in sorted(source.glob("*.ipynb")):
        reports[path.name] = execution.execute(
            path,
            dest / path.name,
            limits=sandbox.Limits(**settings.limits),
            cell_timeout=settings.cell_timeout,
            threads=settings.threads,
            sandboxed=settings.sandboxed,
        )
    return reports


def score(root: Path, lab: str, student: str, settings: Settings, result: Result) -> None:
    """nbgrader scores the executed notebooks from their outputs; then review and feedback."""
    from course.machinery.grading import recorded_outputs_config

    api = _api(
        root, settings.cell_timeout, **recorded_outputs_config(), **{"CourseDirectory.submitted_directory": EXECUTED}
    )
    _check(api.autograde(lab, student, force=True, create=True), "score the executed notebook")
    result.findings = [*suspicious(result.reports), *static_findings(root, lab, student)]
    if result.findings:
        result.review = True
        withhold_automatic_points(root, lab, student)
    if settings.feedback:
        _check(api.generate_feedback(lab, student, force=True), "write the feedback")


def static_findings(root: Path, lab: str, student: str) -> list[str]:
    """The integrity scan of what the student submitted, against the notebooks as released."""
    found = []
    for path in sorted((root / "grading" / "submitted" / student / lab).glob("*.ipynb")):
        release = root / "labs" / lab / path.name
        if not release.exists():
            continue
        nb, shipped = notebooks.load(path), nbformat.read(release, as_version=4)
        found += [f"{path.name}: {finding}" for finding in integrity.scan(nb, shipped)]
    return found


def suspicious(reports: dict[str, dict]) -> list[str]:
    """What the execution saw that an honest notebook cannot produce."""
    found = []
    for name, report in reports.items():
        found += [f"{name}: {cell} raised an error that its outputs do not show" for cell in report["hidden_errors"]]
        found += [f"{name}: after {cell}, the kernel did not run what it was sent" for cell in report["probes_failed"]]
    return found


def withhold_automatic_points(root: Path, lab: str, student: str) -> None:
    """Test cells score 0 and wait for a person (formgrader shows them as needing a manual grade)."""
    from nbgrader.api import Gradebook

    from course.machinery.grading import nbgrader_config

    with Gradebook(nbgrader_config(root).CourseDirectory.db_url) as gb:
        for nb in gb.find_submission(lab, student).notebooks:
            for grade in nb.grades:
                if grade.auto_score is not None:
                    grade.auto_score = 0.0
                    grade.needs_manual_grade = True
        gb.db.commit()


def run(root: Path, lab: str, student: str, settings: Settings, stages: list[str]) -> Result:
    result = Result()
    if "sanitize" in stages:
        sanitize(root, lab, student, settings)
    if "execute" in stages:
        result.reports = {name: asdict(report) for name, report in execute(root, lab, student, settings).items()}
    else:
        result.reports = _reports_on_disk(root, lab, student)
    if "score" in stages:
        score(root, lab, student, settings, result)
    return result


def _reports_on_disk(root: Path, lab: str, student: str) -> dict[str, dict]:
    path = root / EXECUTED / student / lab / "reports.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_reports(root: Path, lab: str, student: str, reports: dict[str, dict]) -> None:
    """Reports of an execution that ran elsewhere (a cluster worker), for the `score` stage here."""
    path = root / EXECUTED / student / lab / "reports.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(reports))
