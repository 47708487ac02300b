"""Warm worker processes for `course grade`: one per parallel slot, reused from one submission to the next.

Starting Python and importing nbgrader, nbconvert and nbclient costs a few seconds, more
than grading a small notebook's own cells; a cohort pays it once per slot instead of
once per submission. A worker is still a process of its own, in a process group of its
own: when a submission runs past its wall-clock limit the whole group is killed (the
sandboxed kernel with it) and the next submission gets a fresh worker.

Protocol: one JSON job per line on the worker's stdin; one line `RESULT <json>` on its
stdout when the job is done (anything else it prints is nbgrader's log, kept for the
report when a job fails).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from course.machinery import autograde

MARK = "RESULT "
RECYCLE_AFTER = 25  # jobs: a long-lived process that imports and grades notebooks slowly grows


class Worker:
    """One warm worker process; `run` gives it a job and waits at most `limit` seconds."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self._env = {**os.environ, **(env or {}), "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
        self._proc: subprocess.Popen | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._jobs = 0

    def _start(self) -> subprocess.Popen:
        command = [sys.executable, "-m", "course.machinery.workers"]
        proc = subprocess.Popen(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=self._env, start_new_session=True, bufsize=1,
        )  # fmt: skip
        self._lines = queue.Queue()
        threading.Thread(target=self._read, args=(proc, self._lines), daemon=True).start()
        self._jobs = 0
        return proc

    @staticmethod
    def _read(proc: subprocess.Popen, lines: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # the process is gone

    def run(self, job: dict, limit: float) -> tuple[int | None, str, autograde.Result | None]:
        """(0, log, result) when done; (1, log, None) when the worker failed; (None, log, None) at the limit."""
        if self._proc is None or self._proc.poll() is not None or self._jobs >= RECYCLE_AFTER:
            self.close()
            self._proc = self._start()
        assert self._proc.stdin is not None
        self._jobs += 1
        self._proc.stdin.write(json.dumps(job) + "\n")
        self._proc.stdin.flush()
        log: list[str] = []
        deadline = _now() + limit
        while True:
            try:
                line = self._lines.get(timeout=max(0.0, deadline - _now()))
            except queue.Empty:
                self.kill()
                return None, "\n".join(log), None
            if line is None:
                self.close()
                return 1, "\n".join(log), None
            if line.startswith(MARK):
                answer = json.loads(line[len(MARK) :])
                if "error" in answer:
                    return 1, "\n".join([*log, answer["error"]]), None
                return 0, "\n".join(log), autograde.Result(**answer)
            log.append(line)

    def kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()
        self._proc = None

    def close(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._proc = None


def _now() -> float:
    import time

    return time.monotonic()


def job(root: Path, lab: str, student: str, settings: autograde.Settings, stages: list[str]) -> dict:
    return {"root": str(root), "lab": lab, "student": student, "settings": asdict(settings), "stages": stages}


def _serve() -> int:
    """The worker's side: jobs in, results out, until stdin closes."""
    for line in sys.stdin:
        spec = json.loads(line)
        try:
            result = _with_retries(spec)
            answer = asdict(result)
        except Exception as exc:  # reported to the grader as this submission's error; the worker goes on
            answer = {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
        print(MARK + json.dumps(answer), flush=True)
    return 0


def _with_retries(spec: dict) -> autograde.Result:
    """SQLite may be briefly locked by a sibling worker writing its own grades."""
    import time

    settings = autograde.Settings(**spec["settings"])
    for attempt in range(4):
        try:
            return autograde.run(Path(spec["root"]), spec["lab"], spec["student"], settings, spec["stages"])
        except Exception as exc:
            if "database is locked" not in str(exc) or attempt == 3:
                raise
            time.sleep(1 + attempt)
    raise AssertionError("unreachable")


if __name__ == "__main__":
    raise SystemExit(_serve())
