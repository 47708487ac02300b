"""`course run`: execute solutions, grade them, and print the milestone scoreboard.

Each solution runs once, with papermill, into build/run/<profile>/<lab>/. The
executed notebook is then scored with nbgrader's own rule, cell by cell, without a
second execution, and its milestone is read back from the cell output that
`course.milestones.record` left there.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from course import milestones
from course.machinery import notebooks
from course.machinery.labs import Lab
from course.paths import BUILD

PROFILES = ("cpu", "gpu", "full", "smoke")


@dataclass
class LabResult:
    lab: str
    notebook: str
    path: Path  # the executed copy: the evidence that is scored and read for the milestone
    seconds: float
    budget_s: int
    score: float
    max_score: float
    milestone: milestones.Milestone | None
    failed_tests: list[str]
    crashed_cells: list[str]

    def ok(self, profile: str) -> bool:
        """Smoke runs shrink the data, so there only crashes count, not scores or milestones."""
        if profile == "smoke":
            return not self.crashed_cells
        return (
            not self.crashed_cells
            and self.score >= self.max_score
            and self.milestone is not None
            and self.milestone.passed
        )


def run_lab(lab: Lab, profile: str = "cpu", out: Path = BUILD / "run") -> list[LabResult]:
    results = []
    for src in lab.solution_notebooks():
        dst = out / profile / lab.id / src.name
        execution = notebooks.execute(src, dst, {"PROFILE": profile}, cwd=dst.parent)
        executed = nbformat.read(dst, as_version=4)
        found = milestones.read(executed.cells, trusted=notebooks.locked_cell_judge([src]))
        failed = [f"test {r.grade_id}: {r.error}" for r in execution.results if not r.passed]
        crashed = list(execution.failed_cells)
        results.append(
            LabResult(
                lab.id,
                src.name,
                dst,
                execution.seconds,
                lab.budget_s,
                execution.score,
                execution.max_score,
                found[0] if found else None,
                failed,
                crashed,
            )
        )
    return results


def scoreboard(results: list[LabResult], profile: str, machine_line: str = "") -> str:
    header = f"{'lab':<26} {'milestone':<44} {'bar':>10} {'measured':>10} {'pass':>5} {'tests':>9} {'time':>12}"
    lines = [f"Milestone scoreboard (profile: {profile})", *([machine_line] if machine_line else [])]
    lines += [header, "-" * len(header)]
    for r in results:
        m = r.milestone
        op = "" if m is None else (">=" if m.higher_is_better else "<=")
        bar = "-" if m is None else f"{op}{m.bar:.4g}"
        measured = "-" if m is None else f"{m.measured:.4g}"
        passed = "-" if m is None else ("n/a" if profile == "smoke" else ("PASS" if m.passed else "FAIL"))
        name = "-" if m is None else m.name[:44]
        budget = "" if r.seconds <= r.budget_s else " OVER"
        lines.append(
            f"{r.lab:<26} {name:<44} {bar:>10} {measured:>10} {passed:>5} "
            f"{r.score:>4g}/{r.max_score:<4g} {r.seconds:>6.1f}s/{r.budget_s}s{budget}"
        )
        lines.extend(f"    ! {f}" for f in r.crashed_cells + r.failed_tests)
    return "\n".join(lines)


def passed(results: list[LabResult], profile: str) -> bool:
    return all(r.ok(profile) for r in results)


def save(results: list[LabResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            **asdict(r),
            "path": str(r.path),
            "milestone": None if r.milestone is None else {**asdict(r.milestone), "passed": r.milestone.passed},
        }
        for r in results
    ]
    path.write_text(json.dumps(rows, indent=2))
