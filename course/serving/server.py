"""Run an app in a real uvicorn process on 127.0.0.1, and stop it properly.

    with Server("my_service:app", pythonpath=[folder], model=path) as server:
        httpx.get(server.url + "/healthz")

`Server` binds a free port on 127.0.0.1 itself and hands the listening socket to
the child (no race for the port between choosing and binding it), starts
`python -m course.serving.server`, which runs uvicorn on that socket with the app factory,
and waits until `/readyz` says 200. `stop()` sends SIGTERM, on which uvicorn stops
accepting connections and lets the requests in flight finish, then SIGKILL if
that takes longer than `stop_timeout`.

A server must not outlive the notebook that started it: an autograde that dies
half-way would leave it holding a port and memory. The child runs a watchdog
thread that shuts it down when its parent process is gone, and the parent kills
it at interpreter exit and when the `Server` object is garbage collected.

Everything the server writes goes to its scratch folder (a temporary directory
unless you pass one): `server.log` (uvicorn's own lines, tracebacks of 500s) and
`requests.jsonl` (one JSON object per request, from course.serving.service).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from course.runtime import watch_parent

HOST = "127.0.0.1"  # never another address: these servers are for this machine only
DEFAULT_APP = "course.serving.service:app_from_env"


def _kill(proc: subprocess.Popen) -> None:
    """Last resort (interpreter exit, garbage collection): no grace."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


class Server:
    """A uvicorn process serving `app` (a "module:factory" string) on 127.0.0.1."""

    def __init__(
        self,
        app: str = DEFAULT_APP,
        *,
        model: str | os.PathLike[str] | None = None,
        model_version: str | None = None,
        env: Mapping[str, str] | None = None,
        pythonpath: Iterable[str | os.PathLike[str]] = (),
        scratch: str | os.PathLike[str] | None = None,
        threads: int = 1,
        ready_timeout: float = 60.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.app = app
        self.env = {str(k): str(v) for k, v in (env or {}).items()}
        if model is not None:
            self.env["COURSE_MODEL"] = str(model)
        if model_version is not None:
            self.env["COURSE_MODEL_VERSION"] = model_version
        self.pythonpath = [str(Path(p).resolve()) for p in pythonpath]
        self.scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="course-server-"))
        self.threads = threads
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None
        self._finalizer: weakref.finalize | None = None

    # --- where things are ------------------------------------------------------

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started: call start() or use `with Server(...) as server:`")
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.scratch / "server.log"

    @property
    def requests_path(self) -> Path:
        return self.scratch / "requests.jsonl"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def request_log(self) -> list[dict[str, Any]]:
        """The structured log so far: one dict per answered request, oldest first."""
        if not self.requests_path.exists():
            return []
        return [json.loads(line) for line in self.requests_path.read_text().splitlines() if line.strip()]

    # --- life cycle ------------------------------------------------------------

    def start(self) -> Server:
        if self.running:
            return self
        self.scratch.mkdir(parents=True, exist_ok=True)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        sock.set_inheritable(True)
        env = {
            **os.environ,
            **self.env,
            "PYTHONPATH": os.pathsep.join([*self.pythonpath, os.environ.get("PYTHONPATH", "")]).strip(os.pathsep),
            "PYTHONDONTWRITEBYTECODE": "1",  # a module rewritten twice in one second must not run stale bytecode
            "PYTHONUNBUFFERED": "1",
            "COURSE_THREADS": str(self.threads),
            "OMP_NUM_THREADS": str(self.threads),
            "COURSE_PROGRESS": "0",
        }
        cmd = [
            sys.executable, "-m", "course.serving.server", self.app,
            "--fd", str(sock.fileno()), "--port", str(self.port), "--parent-pid", str(os.getpid()),
            "--requests-log", str(self.requests_path),
        ]  # fmt: skip
        try:
            with self.log_path.open("ab") as log:
                self.proc = subprocess.Popen(
                    cmd, env=env, cwd=self.scratch, stdout=log, stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL, pass_fds=(sock.fileno(),), start_new_session=True,
                )  # fmt: skip
        finally:
            sock.close()  # the child has its own copy
        self.returncode = None
        self._finalizer = weakref.finalize(self, _kill, self.proc)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the server exited (code {self.proc.returncode}) before it was ready. "
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                try:
                    answer = client.get(self.url + "/readyz")
                    if answer.status_code == 200:
                        return
                    if answer.status_code == 503 and answer.json().get("failed"):
                        raise RuntimeError(f"the server could not load its model: {answer.json().get('detail')}")
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the server was not ready after {self.ready_timeout:.0f} s. "
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.05)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM (uvicorn finishes the requests in flight), then SIGKILL after `timeout` s; the exit code."""
        proc = self.proc
        if proc is None:
            return self.returncode
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                _kill(proc)  # the whole process group, while it still exists
        self.returncode = proc.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
        self.proc = None
        return self.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"Server({self.app!r}, {state}, logs in {self.scratch})"


# --- the child process: python -m course.serving.server ------------------------------------


def _logging_config(requests_log: str | None) -> dict[str, Any]:
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["course.serving"] = {"handlers": ["default"], "level": "INFO", "propagate": False}
    if requests_log:
        config["formatters"]["line"] = {"format": "%(message)s"}
        config["handlers"]["requests"] = {"class": "logging.FileHandler", "filename": requests_log, "formatter": "line"}
        config["loggers"]["course.serving.requests"] = {"handlers": ["requests"], "level": "INFO", "propagate": False}
    return config


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m course.serving.server", description="uvicorn on an inherited socket"
    )
    parser.add_argument("app", help='"module:factory", a function returning an ASGI app')
    parser.add_argument("--fd", type=int, required=True, help="listening socket inherited from the parent")
    parser.add_argument("--port", type=int, required=True, help="its port (for uvicorn's log lines)")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--requests-log", default=None)
    args = parser.parse_args(argv)

    if args.parent_pid is not None:
        threading.Thread(target=watch_parent, args=(args.parent_pid,), name="parent-watchdog", daemon=True).start()
    import uvicorn  # torch, if the app uses it, takes its thread count from OMP_NUM_THREADS (set by Server)

    sock = socket.socket(fileno=args.fd)
    config = uvicorn.Config(
        args.app,
        factory=True,
        host=HOST,
        port=args.port,
        log_config=_logging_config(args.requests_log),
        access_log=False,  # course.serving.service writes a structured line per request instead
        proxy_headers=False,  # no proxy in front of us: X-Forwarded-For from a client must not change its address
        timeout_graceful_shutdown=None,  # on SIGTERM, wait for every request in flight
    )
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
