"""Benchmark: `course grade` against nbgrader's plain sequential `autograde`, same machine, same run.

    .venv/bin/python scripts/bench_grading.py [--copies 10] [--lab 02]

Builds a scratch course, submits `--copies` copies of the lab's solution (its default cpu
profile) twice, once per grader, and grades them: first with nbgrader's own autograde, one
student after another in one process (what an instructor gets from `nbgrader autograde
LAB`), then with `course grade` (parallel warm workers, kernels in the sandbox). Prints
both wall times, their ratio, and the machine line. A benchmark, not a test: nothing here
asserts a speed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from course.machinery import autograde, grading, machine
from course.machinery.labs import resolve
from course.paths import SOLUTIONS


def scratch_course(lab, copies: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix="bench-grading-"))
    shutil.copytree(SOLUTIONS / lab.id, root / "solutions" / lab.id)
    (root / "grading").mkdir()
    grading.build([lab], root)
    for who in ("plain", "course"):
        for i in range(copies):
            dest = root / grading.SUBMITTED / f"{who}{i:02d}" / lab.id
            dest.mkdir(parents=True)
            for notebook in lab.solution_notebooks():
                shutil.copy(notebook, dest / notebook.name)
    return root


def plain_nbgrader(root: Path, lab_id: str, students: list[str]) -> float:
    """nbgrader's autograde, as `nbgrader autograde` runs it: one submission after another."""
    api = autograde._api(root, 600)
    start = time.perf_counter()
    for student in students:
        result = api.autograde(lab_id, student, force=True, create=True)
        if not result["success"]:
            sys.exit(f"nbgrader could not grade {student}: {result.get('error')}")
    return time.perf_counter() - start


def sandbox_cost(lab, copies: int, workers: int) -> None:
    """Seconds the sandbox adds per submission: the same notebooks graded with it and without it."""
    root = scratch_course(lab, copies)
    seconds = {}
    for who, sandboxed in (("plain", False), ("course", True)):
        students = [f"{who}{i:02d}" for i in range(copies)]
        options = grading.Options(workers=workers, feedback=False, sandboxed=sandboxed)
        outcomes = grading.grade(root, [lab], students, options, rebuild=False)
        seconds[sandboxed] = sum(o.seconds for o in outcomes) / len(outcomes)
    print(f"{lab.id}: {seconds[False]:.2f} s per submission without the sandbox, {seconds[True]:.2f} s with it: "
          f"the sandbox costs {seconds[True] - seconds[False]:+.2f} s")  # fmt: skip
    shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--lab", default="02")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sandbox-cost", action="store_true", help="measure what the sandbox adds instead")
    args = parser.parse_args()
    (lab,) = resolve([args.lab])
    print(machine.measure().line(), flush=True)
    if args.sandbox_cost:
        sandbox_cost(lab, args.copies, args.workers)
        return 0
    root = scratch_course(lab, args.copies)
    plain = [f"plain{i:02d}" for i in range(args.copies)]
    ours = [f"course{i:02d}" for i in range(args.copies)]
    print(f"{args.copies} copies of {lab.id}'s solution; scratch course {root}", flush=True)
    plain_s = plain_nbgrader(root, lab.id, plain)
    print(f"nbgrader autograde, sequential: {plain_s:.0f} s", flush=True)
    start = time.perf_counter()
    outcomes = grading.grade(root, [lab], ours, grading.Options(workers=args.workers, feedback=False), rebuild=False)
    ours_s = time.perf_counter() - start
    full = sum(o.auto_score == o.auto_max > 0 for o in outcomes)
    print(f"course grade --workers {args.workers} (sandboxed): {ours_s:.0f} s; full marks {full}/{len(outcomes)}")
    print(f"speed-up: {plain_s / ours_s:.2f}x")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
