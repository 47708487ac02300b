"""`course doctor`: is this machine ready for the course, and if not, what to do."""

from __future__ import annotations

import json
import platform
import sys
from dataclasses import dataclass

from course import data
from course.runtime import cpu_count, default_threads

TORCH_PIN = "2.13.0"


@dataclass
class Finding:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _python() -> Finding:
    ok = sys.version_info[:2] >= (3, 11)
    return Finding(
        "python", ok, platform.python_version(), "" if ok else "Install Python 3.11 and re-run `make setup`."
    )


def _torch() -> list[Finding]:
    try:
        import torch
    except ImportError:
        return [Finding("torch", False, "not installed", "Run `make setup` (it installs torch==2.13.0 first).")]
    version = torch.__version__.split("+")[0]
    found = [
        Finding(
            "torch",
            version == TORCH_PIN,
            torch.__version__,
            "" if version == TORCH_PIN else f"The course is pinned to torch=={TORCH_PIN}; run `make setup`.",
        )
    ]
    threads = torch.get_num_threads()
    found.append(
        Finding(
            "threads",
            True,
            f"{cpu_count()} cores, torch uses {threads}, notebooks use {default_threads()} "
            "(set COURSE_THREADS to change)",
        )
    )
    if torch.cuda.is_available():
        found.append(
            Finding("accelerator", True, f"CUDA: {torch.cuda.get_device_name(0)}; the gpu profile is available")
        )
    else:
        found.append(
            Finding(
                "accelerator",
                True,
                "none (CPU only): every lab runs on the default cpu profile; GPU cells say why they are skipped",
            )
        )
    return found


def _kernel() -> Finding:
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
    except Exception as exc:  # no kernelspec at all
        return Finding("jupyter kernel", False, str(exc), "Run `python -m ipykernel install --sys-prefix`.")
    exe = spec.argv[0]
    ok = exe in ("python", "python3", "{python}") or exe == sys.executable
    return Finding(
        "jupyter kernel",
        ok,
        f"python3 -> {exe}",
        "" if ok else "The python3 kernel is another Python; run `python -m ipykernel install --sys-prefix`.",
    )


def _datasets() -> list[Finding]:
    found = []
    for rel, problem in data.check_all().items():
        found.append(Finding(f"data {rel}", problem is None, "sha256 ok" if problem is None else "bad", problem or ""))
    return found


def _machine() -> Finding:
    from course.machinery.machine import measure

    return Finding("machine", True, measure().line().removeprefix("machine: "))


def diagnose() -> list[Finding]:
    return [_python(), *_torch(), _machine(), _kernel(), *_datasets()]


def render(findings: list[Finding], as_json: bool = False) -> str:
    if as_json:
        return json.dumps([f.__dict__ for f in findings], indent=2)
    lines = []
    for f in findings:
        lines.append(f"[{'ok' if f.ok else '!!'}] {f.name:<48} {f.detail}")
        if f.fix:
            lines.append(f"     -> {f.fix}")
    bad = sum(not f.ok for f in findings)
    lines.append("All good." if not bad else f"{bad} problem(s) found; each says what to do.")
    return "\n".join(lines)
