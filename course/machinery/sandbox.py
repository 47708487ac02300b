"""Where a student's kernel runs: bubblewrap, an unprivileged uid, and limits.

nbgrader documents that it is not a security boundary: a submission's kernel runs
with the grader's rights, next to the solutions, the gradebook and every other
submission. So `course grade` starts each kernel through bubblewrap (a maintained
sandbox that Flatpak is built on, in Debian as `bubblewrap`), which gives it

- its own mount namespace holding only what a lab needs, read-only: the system's
  libraries, the Python installation and virtual environment, the `course` package,
  the datasets and the cached models; a private /tmp and working folder on tmpfs of a
  fixed size; never `solutions/`, `grading/` or another student's files;
- its own pid, network (loopback only: the serving labs' servers still run), IPC and
  UTS namespaces, so nothing it starts outlives it, and it reaches no network;
- an unprivileged uid of its own with no capabilities (when the grader runs as
  root; otherwise the grader's uid inside a user namespace), and resource limits:
  processes, CPU seconds, file size, open files, memory (a cgroup when one can be
  created, else RLIMIT_DATA).

The kernel's channels to the grader are Unix sockets in a folder bound into the
sandbox, so the grader (outside, trusted) talks to the kernel without sharing a
network with it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from course.paths import BUILD, DATASETS, ROOT

WORK = "/home/student"  # the kernel's working folder inside the sandbox (tmpfs)
TMP = "/tmp"  # noqa: S108 (the sandbox's own tmpfs, private to one kernel)
FIRST_UID, UIDS = 61000, 1000  # a root grader's sandbox uids: one per kernel running now, on this machine
UID_LOCKS = Path("/run/lock/mle-course")


class SandboxUnavailable(RuntimeError):
    """Untrusted code cannot be isolated on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class Limits:
    """What one submission may use. Defaults come from the lab's budget (`for_lab`)."""

    memory_gib: float = 4.0
    processes: int = 2048  # threads count: torch, ONNX Runtime and uvicorn pools, a few servers
    cpu_s: int = 1800  # CPU seconds per process
    file_mib: int = 1024  # the largest file it may write
    disk_mib: int = 2048  # each of /tmp and the working folder
    open_files: int = 4096

    @classmethod
    def for_lab(cls, budget_s: int, cores: int, memory_gib: float = 4.0) -> Limits:
        """CPU: 8x the budget on every core, so only a runaway hits it before the wall-clock limit (4x)."""
        return cls(memory_gib=memory_gib, cpu_s=max(300, 8 * budget_s * max(1, cores)))

    def describe(self) -> str:
        return (
            f"memory {self.memory_gib:g} GiB, {self.processes} processes/threads, {self.cpu_s} CPU s per process, "
            f"files up to {self.file_mib} MiB, {self.disk_mib} MiB each of /tmp and the working folder, "
            f"{self.open_files} open files"
        )


# --- is there a sandbox here? -------------------------------------------------------


def unavailable_reason() -> str | None:
    """None when bubblewrap can isolate a process here; otherwise why not and what to do."""
    if sys.platform != "linux":
        return f"the sandbox needs Linux namespaces (bubblewrap); this is {sys.platform}"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed: `sudo apt-get install bubblewrap` (Debian, Ubuntu) or your distribution's"
    probe = subprocess.run(
        ["bwrap", *_namespace_flags(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return (
            f"bubblewrap is installed but cannot create namespaces here ({probe.stderr.strip()[-200:]}); "
            "on Ubuntu 24.04+ allow unprivileged user namespaces for bwrap (AppArmor), or run the grader as root"
        )
    return None


def _namespace_flags() -> list[str]:
    flags = ["--unshare-pid", "--unshare-net", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if os.geteuid() != 0:  # an unprivileged grader needs a user namespace for the others
        flags += ["--unshare-user", "--uid", "65534", "--gid", "65534"]
    return flags


# --- memory: a cgroup when we may make one -----------------------------------------------


@dataclass
class MemoryGroup:
    """A memory cgroup for one submission (v2, or v1's memory controller), or None where we may not make one."""

    path: Path
    version: int

    @classmethod
    def create(cls, limit_bytes: int) -> MemoryGroup | None:
        name = f"mle-course-{uuid.uuid4().hex[:12]}"
        root = Path("/sys/fs/cgroup")
        candidates = [(root, 2), (root / "unified", 2), (root / "memory", 1)]
        for base, version in candidates:
            limit_file = "memory.max" if version == 2 else "memory.limit_in_bytes"
            if version == 2 and "memory" not in _read(base / "cgroup.controllers"):
                continue
            try:
                group = base / name
                group.mkdir()
                (group / limit_file).write_text(str(limit_bytes))
                if version == 1:  # no swap either, where the kernel lets us say so
                    try:
                        (group / "memory.memsw.limit_in_bytes").write_text(str(limit_bytes))
                    except OSError:
                        pass
                return cls(group, version)
            except OSError:
                shutil.rmtree(base / name, ignore_errors=True)
        return None

    def peak_bytes(self) -> int:
        name = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        text = _read(self.path / name).strip()
        return int(text) if text.isdigit() else 0

    def hit_limit(self) -> bool:
        """Whether the kernel's OOM killer acted in this group (v2: memory.events; v1: memory.oom_control)."""
        events_file = "memory.events" if self.version == 2 else "memory.oom_control"
        events = dict(line.split()[:2] for line in _read(self.path / events_file).splitlines() if " " in line)
        return int(events.get("oom_kill", 0)) > 0

    def join_command(self) -> list[str]:
        """A prefix that moves the process into the group before it runs anything else."""
        procs = self.path / "cgroup.procs"
        return ["sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "sh"]

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError:
            pass  # still has processes for a moment; the next run's creation uses a fresh name


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


# --- the command ------------------------------------------------------------------------


def readable_paths() -> list[Path]:
    """What a lab's kernel may read: system libraries, Python, the venv, the course package, data, cached models."""
    python_home = Path(os.path.realpath(sys.base_prefix))
    paths = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc")]
    paths += [python_home, Path(sys.prefix), ROOT / "course", DATASETS, BUILD / "models"]
    return [p for p in dict.fromkeys(paths) if p.exists()]


def environment(threads: int) -> dict[str, str]:
    """The whole environment of the kernel: nothing of the grader's leaks in."""
    return {
        "HOME": f"{TMP}/home",
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "COURSE_THREADS": str(threads),
        "OMP_NUM_THREADS": str(threads),
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": f"{TMP}/matplotlib",
        "IPYTHONDIR": f"{TMP}/ipython",
        "JUPYTER_RUNTIME_DIR": f"{TMP}/jupyter",
        "COURSE_PROGRESS": "0",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "MLFLOW_TRACKING_URI": f"file:{TMP}/mlruns",
    }


def _parents_first(paths: list[Path]) -> list[str]:
    """Every folder above a bind target, to create with mode 0755 (bubblewrap makes them 0700 otherwise)."""
    seen: dict[str, None] = {}
    for path in paths:
        for parent in reversed(path.parents):
            if str(parent) != "/":
                seen[str(parent)] = None
    return [p for p in seen if not any(p == str(t) or p.startswith(str(t) + "/") for t in paths)]


def command(argv: list[str], channels: Path, limits: Limits, threads: int, uid: int) -> list[str]:
    """`argv` (a kernel's command line) run inside the sandbox, talking to us through `channels`."""
    ro = readable_paths()
    args = ["bwrap", *_namespace_flags(), "--die-with-parent", "--new-session", "--clearenv"]
    for parent in _parents_first([*ro, channels]):
        args += ["--perms", "0755", "--dir", parent]
    for path in ro:
        args += ["--ro-bind", str(path), str(path)]
    disk = str(limits.disk_mib * 2**20)
    shm = "/dev/shm"  # noqa: S108 (the sandbox's own, for joblib's and torch's shared memory)
    args += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--size", disk, "--tmpfs", shm]
    args += ["--size", disk, "--perms", "1777", "--tmpfs", TMP]
    args += ["--size", disk, "--perms", "0777", "--tmpfs", WORK, "--chdir", WORK]
    args += ["--bind", str(channels), str(channels)]
    for key, value in environment(threads).items():
        args += ["--setenv", key, value]
    args += ["--", *_drop_privileges(uid), *_rlimits(limits), *argv]
    return args


def _drop_privileges(uid: int) -> list[str]:
    if os.geteuid() != 0:
        return []  # already unprivileged, and mapped to nobody by the user namespace
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--inh-caps=-all", "--no-new-privs", "--"]


@contextmanager
def claimed_uid() -> Iterator[int]:
    """A sandbox uid no other kernel on this machine uses while we hold it (any process: a lock file per uid).

    Under a root grader every kernel gets a uid of its own, so its process limit counts its
    processes only, and `reap` kills only what it started. An unprivileged grader has one uid.
    """
    if os.geteuid() != 0:
        yield os.geteuid()
        return
    UID_LOCKS.mkdir(parents=True, exist_ok=True)
    for uid in range(FIRST_UID, FIRST_UID + UIDS):
        with (UID_LOCKS / f"{uid}.lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            try:
                yield uid
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
            return
    raise SandboxUnavailable(f"all {UIDS} sandbox uids from {FIRST_UID} are in use on this machine")


def reap(uid: int, wait_s: float = 15.0) -> int:
    """Kill every process of a sandbox uid and wait until the kernel has let them go; how many there were.

    The pid namespace dies with the sandbox, but a fork bomb's thousands of processes take
    a moment to go, and until they have gone they count against the next kernel's process
    limit under the same uid. Only for a root grader's own sandbox uids.
    """
    if os.geteuid() != 0 or uid < FIRST_UID:
        return 0
    import signal
    import time

    def alive() -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == uid:
                        pids.append(int(entry.name))
                except OSError:
                    pass
        return pids

    found = alive()
    deadline = time.monotonic() + wait_s
    while (pids := alive()) and time.monotonic() < deadline:
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    return len(found)


def give(path: Path, uid: int) -> None:
    """Let the sandbox's uid use a file or folder we made for it (its channels, its connection file)."""
    if os.geteuid() == 0:
        os.chown(path, uid, uid)


def _rlimits(limits: Limits) -> list[str]:
    return [
        "prlimit",
        f"--nproc={limits.processes}",
        f"--cpu={limits.cpu_s}",
        f"--fsize={limits.file_mib * 2**20}",
        f"--nofile={limits.open_files}",
        f"--data={int(limits.memory_gib * 2**30)}",
        "--core=0",
        "--",
    ]
