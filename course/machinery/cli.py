"""The `course` command: build, run, check, grade, doctor, data."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from course.machinery import labs as lab_registry
from course.paths import BUILD, ROOT


def _cmd_build(args: argparse.Namespace) -> int:
    from course.machinery.grading import build

    for path in build(lab_registry.resolve(args.labs)):
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from course.machinery import machine, running

    if args.profile == "gpu":
        import torch

        if not torch.cuda.is_available():
            print("The gpu profile needs CUDA and torch sees no GPU. Use the default: `course run`.", file=sys.stderr)
            return 2
    start = time.perf_counter()
    chosen = lab_registry.resolve(args.labs)
    line = machine.measure().line()
    print(line, flush=True)
    results = []
    for lab in chosen:
        print(f"running {lab.id} (budget {lab.budget_s} s) ...", flush=True)
        results.extend(running.run_lab(lab, args.profile))
    print()
    print(running.scoreboard(results, args.profile, line))
    running.save(results, BUILD / "run" / args.profile / "scoreboard.json")
    ok = running.passed(results, args.profile)
    print(
        f"\n{'All milestones reached' if ok else 'Some milestones or tests FAILED'} "
        f"({time.perf_counter() - start:.0f} s in all)."
    )
    return 0 if ok else 1


def _cmd_check(args: argparse.Namespace) -> int:
    from course.machinery.checking import check
    from course.machinery.notebooks import NotebookError

    try:
        ok, text = check(Path(args.notebook), args.profile)
    except NotebookError as exc:
        print(f"Cannot check: {exc}", file=sys.stderr)
        return 2
    print(text)
    return 0 if ok else 1


def _cmd_grade(args: argparse.Namespace) -> int:
    from course.machinery import grading

    start = time.perf_counter()
    options = grading.Options(
        timeout=args.timeout,
        cell_timeout=args.cell_timeout,
        workers=args.workers,
        sandboxed=not args.no_sandbox,
        force=args.force,
        memory_gib=args.memory,
    )
    outcomes = grading.grade(
        labs=lab_registry.resolve(args.labs) if args.labs else None,
        students=args.student,
        options=options,
        cluster=args.cluster,
    )
    print(grading.report(outcomes))
    where = f"on the cluster {args.cluster}" if args.cluster else f"with {args.workers or 'auto'} worker(s)"
    print(
        f"\nGraded {len(outcomes)} submission(s) in {time.perf_counter() - start:.0f} s {where}. "
        "Grades: grading/grades.csv (every lab graded so far); feedback: grading/feedback/<student>/<lab>/."
    )
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from course.machinery.doctor import diagnose, render

    findings = diagnose()
    print(render(findings, args.json))
    return 0 if all(f.ok for f in findings) else 1


def _cmd_data(args: argparse.Namespace) -> int:
    from course import data

    if args.action == "verify":
        problems = {k: v for k, v in data.check_all().items() if v}
        for message in problems.values():
            print(message)
        print("All dataset files match the manifest." if not problems else f"{len(problems)} file(s) need attention.")
        return 1 if problems else 0
    for rel in args.paths or list(data.read_manifest()):
        print(f"fetched {data.fetch(rel)}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Build, run, check and grade the course's labs.")
    sub = p.add_subparsers(dest="command", required=True)

    b = sub.add_parser("build", help="generate labs/ (student versions) from solutions/ with nbgrader")
    b.add_argument("labs", nargs="*", help="lab ids or numbers (default: all)")
    b.set_defaults(func=_cmd_build)

    r = sub.add_parser("run", help="execute solutions, grade them, print the milestone scoreboard")
    r.add_argument("labs", nargs="*", help="lab ids or numbers (default: all)")
    r.add_argument(
        "--profile",
        default="cpu",
        choices=("cpu", "gpu", "full", "smoke"),
        help="cpu: the default, fits a 2-core laptop; gpu: needs CUDA; full: longer training; "
        "smoke: tiny data, checks that everything runs",
    )
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("check", help="run your notebook and explain which checks pass")
    c.add_argument("notebook")
    c.add_argument("--profile", default="cpu", choices=("cpu", "gpu", "full", "smoke"))
    c.set_defaults(func=_cmd_check)

    g = sub.add_parser("grade", help="autograde grading/submitted/<student>/<lab>/ in parallel")
    g.add_argument("labs", nargs="*", help="lab ids or numbers (default: every lab submitted)")
    g.add_argument("--student", action="append", help="only this student (repeatable)")
    g.add_argument("--workers", type=int, default=None, help="parallel notebooks (default: one per core)")
    g.add_argument("--timeout", type=float, default=None, help="seconds per submission (default: 4x the lab's budget)")
    g.add_argument("--cell-timeout", type=int, default=None, help="seconds per cell before it is interrupted")
    g.add_argument("--memory", type=float, default=None, help="GiB per submission (default: the lab's, 4)")
    g.add_argument("--force", action="store_true", help="grade again what is unchanged since it was last graded")
    g.add_argument("--cluster", default=None, help="a Dask scheduler (tcp://host:8786), or local:N for N local workers")
    g.add_argument(
        "--no-sandbox",
        action="store_true",
        help="run kernels without the sandbox: only for work you trust (your own solutions)",
    )
    g.set_defaults(func=_cmd_grade)

    d = sub.add_parser("doctor", help="check Python, torch, threads, accelerator and every dataset")
    d.add_argument("--json", action="store_true")
    d.set_defaults(func=_cmd_doctor)

    data = sub.add_parser("data", help="verify dataset checksums, or fetch fresh copies from upstream")
    data.add_argument("action", choices=("verify", "fetch"))
    data.add_argument("paths", nargs="*", help="manifest paths such as mnist/train-images-idx3-ubyte.gz")
    data.set_defaults(func=_cmd_data)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
