"""Experiment tracking: what a run must record to be reproduced, and a real MLflow tracking server for the UI.

A tracked run answers two questions months later: *what produced this number?* and *can I get it again?* The
first needs lineage, the second needs every input of the computation, and the inputs of a training run are:

* **the data**, identified by its *content*, not by a file name: `course.data.sha256_of` says which file, the lab's
  fingerprint says which rows and columns were actually used (two samples of one file are two datasets);
* **the code**: the commit of the clone (`git_state`, with the dirty flag that says whether the commit alone is
  the code) and a fingerprint of the functions that train (`code_fingerprint`), because code that lives in a
  notebook is in no commit;
* **the params and the seed**, logged exactly;
* **the environment** (`environment`): Python, the versions of the libraries that compute, and the threads, since
  the order of floating-point sums may follow the thread count.

`dataset_input` records a dataset in MLflow's own dataset tables (the UI's *Datasets used* column) without the
cost of `mlflow.data.from_pandas`, which infers a schema element by element. `TrackingServer` runs the real
`mlflow server` command over a tracking store, on a free port of 127.0.0.1: the UI for people, the REST API
(`/api/2.0/mlflow/...`) for programs. It is tied to the process that started it, like `course.serving.server`.

The labs record runs with their own code; these are the parts that are the same for everyone. Nothing here
imports mlflow (or torch) at module level: the server's wrapper process starts faster without them, and a
notebook imports `course.mlops.registry` first anyway, which keeps MLflow quiet.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import inspect
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.paths import ROOT

HOST = "127.0.0.1"  # never another address: the UI has no authentication
UNKNOWN = "unknown"
PACKAGES = ("numpy", "pandas", "scikit-learn", "scipy", "mlflow", "optuna")
DIGEST_CHARS = 36  # MLflow's datasets table keeps 36 characters of a digest (a VARCHAR(36) on real databases)


# --- what the code was ------------------------------------------------------------------------


@dataclass(frozen=True)
class GitState:
    """The commit of a clone and whether its tracked files differ from it (None when git cannot tell)."""

    commit: str
    dirty: bool | None

    @property
    def known(self) -> bool:
        return self.commit != UNKNOWN


def git_state(root: str | os.PathLike[str] = ROOT, timeout: float = 10.0) -> GitState:
    """`git rev-parse HEAD` of the clone at `root`, and `git describe --dirty`'s notion of dirty.

    Never raises: a course graded from a copy without `.git`, a machine without git, or a repository owned by
    another user (git refuses it as "dubious ownership") all give `GitState("unknown", None)`, and the run must
    then be reproduced from the code fingerprint alone. Dirty means a *tracked* file differs from the commit, so
    the commit alone does not say what ran; untracked files are not part of any commit either way.
    """

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=timeout, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    commit = git("rev-parse", "--verify", "HEAD")
    if not commit:
        return GitState(UNKNOWN, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitState(commit, None if status is None else bool(status))


def code_fingerprint(*functions: Callable[..., Any]) -> str:
    """sha256 of the source text of `functions`, in the order given (hex).

    List every function the training calls that is not in an installed package: a fingerprint of one function
    does not change when a helper it calls does. Any edit changes it, a comment included: a fingerprint errs on
    the side of "different", which costs a retraining, never a wrong "same". Works for functions defined in a
    notebook (IPython keeps each cell's source).
    """
    if not functions:
        raise ValueError("code_fingerprint needs at least one function")
    digest = hashlib.sha256()
    for function in functions:
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError) as exc:
            raise TypeError(f"cannot read the source of {function!r}: {exc}") from exc
        digest.update(f"{function.__qualname__}\n{textwrap.dedent(source)}\n".encode())
    return digest.hexdigest()


# --- what the machine was -----------------------------------------------------------------------


def _threads() -> str:
    """Threads of each native thread pool (OpenMP, BLAS), e.g. 'openblas=1,openmp=1'."""
    from threadpoolctl import threadpool_info

    pools = sorted(
        {f"{pool.get('internal_api', pool.get('user_api'))}={pool['num_threads']}" for pool in threadpool_info()}
    )
    return ",".join(pools) or "none loaded"


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(packages: Iterable[str] = PACKAGES) -> dict[str, str]:
    """What a result may depend on besides code, data, params and seed; every value a string (tags are strings).

    `threads` lists the native thread pools loaded *now* with their sizes: call it after the libraries that
    compute are imported and their threads pinned, i.e. where the training runs.
    """
    env = {
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "cpu": _cpu(),
        "threads": _threads(),
    }
    for name in packages:
        try:
            env[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            env[name] = "not installed"
    return env


# --- what the data was, as MLflow shows it -----------------------------------------------------------------


def _schema(frame: Any) -> Any:
    """An MLflow schema from a DataFrame's dtypes (no look at the values)."""
    import pandas as pd
    from mlflow.types import ColSpec, DataType, Schema

    def kind(column: Any) -> DataType:
        if pd.api.types.is_bool_dtype(column):
            return DataType.boolean
        if pd.api.types.is_integer_dtype(column):
            return DataType.long
        if pd.api.types.is_float_dtype(column):
            return DataType.double
        if pd.api.types.is_datetime64_any_dtype(column):
            return DataType.datetime
        return DataType.string

    return Schema([ColSpec(kind(frame[name]), str(name)) for name in frame.columns])


def dataset_input(frame: Any, *, name: str, source: str | os.PathLike[str], fingerprint: str) -> Any:
    """A dataset for `mlflow.log_input`: name, source file, schema, and `fingerprint` as its digest.

    `mlflow.data.from_pandas(frame)` computes its own digest, of the first 10,000 rows only, and infers a schema by
    looking at every value (about 0.4 s for 10,000 rows, at every run of a sweep). This records the same entry
    from what you already know. MLflow keeps 36 characters of a digest, so the first 36 hex digits of the
    fingerprint go there (144 bits: no collision in practice); log the whole fingerprint as a tag as well.
    """
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # "can be interpreted in multiple ways": two equal local-file sources
        warnings.simplefilter("ignore", UserWarning)
        where = resolve_dataset_source(str(source))
    return MetaDataset(where, name=name, digest=fingerprint[:DIGEST_CHARS], schema=_schema(frame))


# --- the MLflow server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def _kill_group(proc: subprocess.Popen) -> None:
    """Last resort: SIGKILL the server's process group, its uvicorn child included even if the wrapper is gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group id is the wrapper's pid (start_new_session)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class TrackingServer:
    """`mlflow server` over `backend_uri` (e.g. a `sqlite:///` store), on a free port of 127.0.0.1.

        with TrackingServer(uri, artifact_root=folder / "artifacts") as ui:
            httpx.post(ui.url + "/api/2.0/mlflow/runs/search", json={"experiment_ids": ["1"]})

    The server takes several seconds to import and start: `start(wait=False)` returns at once, and
    `wait_ready()`, called where the server is first needed, blocks until `/health` answers. It runs
    one uvicorn worker, writes its log to `scratch/server.log`, and is stopped by `stop()`, at interpreter exit,
    when the object is garbage collected, and by itself when the process that started it is gone.
    """

    def __init__(
        self,
        backend_uri: str,
        *,
        artifact_root: str | os.PathLike[str],
        scratch: str | os.PathLike[str] | None = None,
        ready_timeout: float = 120.0,
        stop_timeout: float = 10.0,
    ) -> None:
        self.backend_uri = backend_uri
        self.artifact_root = Path(artifact_root).resolve()
        self.scratch = Path(scratch) if scratch else Path(tempfile.mkdtemp(prefix="course-mlflow-"))
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.port: int | None = None
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None
        self._launched_at = 0.0
        self._ready = False
        self._finalizer: weakref.finalize | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the server is not started: call start() or use `with TrackingServer(...) as ui:`")
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.scratch / "server.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def command(self) -> list[str]:
        """`mlflow server ...`, run by the wrapper (`main` below) that ties the server to this process."""
        return [
            sys.executable, "-m", "course.mlops.tracking", "--parent-pid", str(os.getpid()), "--",
            "server", "--host", HOST, "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", self.backend_uri, "--default-artifact-root", self.artifact_root.as_uri(),
        ]  # fmt: skip

    def start(self, wait: bool = True) -> TrackingServer:
        if self.running:
            return self.wait_ready() if wait else self
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        self.port = _free_port()  # free now; if another process takes it first, wait_ready() starts again elsewhere
        env = {
            **os.environ,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner: this server only shows runs
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "COURSE_THREADS": "1",
        }
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command(), env=env, cwd=self.scratch, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )  # fmt: skip
        self._launched_at = time.perf_counter()
        self._ready = False
        self._finalizer = weakref.finalize(self, _kill_group, self.proc)
        return self.wait_ready() if wait else self

    def wait_ready(self, attempts: int = 3) -> TrackingServer:
        """Block until `/health` answers 200; raise with the end of the server's log if it cannot start."""
        import httpx

        if self._ready and self.running:
            return self
        if self.proc is None:
            return self.start(wait=True)
        deadline = time.monotonic() + self.ready_timeout
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc.poll() is not None:
                    tail = self.log_tail()
                    if "already in use" in tail and attempts > 1:  # lost the port race: try another port
                        self.proc = None
                        self.start(wait=False)
                        return self.wait_ready(attempts - 1)
                    raise RuntimeError(
                        f"mlflow server exited (code {self.proc.returncode}) before it was ready. "
                        f"Last lines of {self.log_path}:\n{tail}"
                    )
                try:
                    if client.get(self.url + "/health").status_code == 200:
                        self._ready = True
                        self.startup_s = time.perf_counter() - self._launched_at
                        return self
                except httpx.TransportError:
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(
                        f"mlflow server was not ready after {self.ready_timeout:.0f} s. "
                        f"Last lines of {self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.1)

    def stop(self, timeout: float | None = None) -> int | None:
        """SIGTERM (the server finishes its requests), SIGKILL to the group after `timeout` s; the exit code."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=self.stop_timeout if timeout is None else timeout)
        _kill_group(proc)  # whatever is left: the uvicorn child, if the wrapper died without stopping it
        code = proc.wait()
        if self._finalizer is not None:
            self._finalizer.detach()
        self.proc = None
        self._ready = False
        return code

    def __enter__(self) -> TrackingServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"running at {self.url}" if self.running else "stopped"
        return f"TrackingServer({self.backend_uri!r}, {state}, log in {self.log_path})"


def _watch_parent(parent_pid: int, grace: float = 10.0) -> None:
    """`course.runtime.watch_parent`, without importing torch into the server's process (seconds of start-up)."""
    while os.getppid() == parent_pid:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGTERM)  # mlflow's handler forwards it to uvicorn, which stops; then we exit
    time.sleep(grace)
    os._exit(1)


def main(argv: list[str] | None = None) -> None:
    """`python -m course.mlops.tracking --parent-pid PID -- server ...`: the `mlflow` command, tied to PID.

    The `mlflow server` command starts uvicorn as its child and forwards SIGTERM to it; the watchdog sends that
    SIGTERM when the notebook that started the server is gone, so a crashed kernel leaves no server behind.
    """
    parser = argparse.ArgumentParser(prog="python -m course.mlops.tracking", description=main.__doc__)
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("mlflow_args", nargs=argparse.REMAINDER, help="arguments of the mlflow command, after --")
    args = parser.parse_args(argv)
    mlflow_args = args.mlflow_args[1:] if args.mlflow_args[:1] == ["--"] else args.mlflow_args
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid,), name="parent-watchdog", daemon=True).start()
    from mlflow.cli import cli

    code: int | str | None = 0
    try:
        cli.main(args=mlflow_args, prog_name="mlflow")
    except SystemExit as exc:  # click ends every command with sys.exit
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    # No interpreter teardown: garbage-collecting mlflow's module graph at exit takes seconds, after the server
    # has already stopped, and stop() would wait for it.
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


if __name__ == "__main__":
    main()
