"""Run a small torch.distributed job on this machine the way a cluster runs one: with torchrun.

    run = distributed.torchrun(SCRATCH / "worker.py", "--out", out, nproc=2)
    print(run.torchrun_line)                  # the command you would type on a cluster node
    per_rank = distributed.collect(out, 2)    # what each rank saved with distributed.save_result

`torchrun` here is torchrun itself (`torch.distributed.run`: same flags, same environment for the
workers: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT), started as `python -m course.foundations.distributed`
with two changes that a shared course machine needs and a cluster does not:

* Nothing listens beyond this machine. torchrun's agent hosts the rendezvous store (a TCPStore) on every
  network interface; here it listens on 127.0.0.1 only, on a socket the launching process bound and handed
  over (so there is no race for the port either). gloo is pinned to the loopback interface. Flags that would
  start a store elsewhere (`--standalone`, `--rdzv-backend c10d`, a master address that is not 127.0.0.1) are
  refused.
* Nothing outlives the notebook. torchrun starts each worker in a session of its own, so killing the agent's
  process group does not reach the workers; `torchrun()` stops the agent with SIGTERM (it passes that on to
  its workers), then kills every process left under it. The agent also stops when its parent process is gone.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.runtime import watch_parent

HOST = "127.0.0.1"  # never another address: these jobs are for this machine only
RESULT_PATTERN = "rank{rank}.pt"
_WORKER_LINE = re.compile(r"(?P<tag>\[default\d+\]:)(?:\[rank\d+\]: )?(?P<text>.*)")


class DistributedRunError(RuntimeError):
    """A torchrun job failed or ran out of time; the message shows a worker's traceback or the job's last lines."""


@dataclass(frozen=True)
class Run:
    """What one torchrun job did: its command, exit code, combined output and wall time."""

    command: list[str]
    returncode: int
    output: str
    seconds: float
    nproc: int
    port: int

    @property
    def torchrun_line(self) -> str:
        """The same job as you would start it with the `torchrun` command (without the temporary --log-dir)."""
        start = self.command.index("--nproc-per-node")
        words = self.command[start:]
        at = words.index("--log-dir")
        return shlex.join(["torchrun", *words[:at], *words[at + 2 :]])

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.output.strip().splitlines()[-lines:])

    def first_traceback(self, limit: int = 40) -> str:
        """The first traceback a worker printed (the cause; the agent's own traceback after it is a consequence).

        Worker lines carry torchrun's `[default<local rank>]:` prefix and, for an uncaught exception, torch's
        `[rank<rank>]: ` after it.
        """
        lines = self.output.splitlines()
        for i, line in enumerate(lines):
            found = _WORKER_LINE.match(line)
            if found and found.group("text").startswith("Traceback (most recent call last)"):
                tag = found.group("tag")
                block = [m for m in map(_WORKER_LINE.match, lines[i:]) if m and m.group("tag") == tag]
                texts = [m.group("text") for m in block]
                end = next(
                    (j for j, t in enumerate(texts[1:], 1) if t.strip() and not t.startswith(" ")), len(block) - 1
                )  # the exception line ends the traceback
                return "\n".join(m.group(0) for m in block[: end + 1][-limit:])
        return ""

    def worker_tails(self, lines: int = 10) -> str:
        """The last lines each worker printed, rank by rank.

        A worker killed by a signal or aborted in C++ (a gloo error in a background thread) prints no Python
        traceback, and the agent's own traceback says only that it died: what it printed last is the clue.
        """
        by_tag: dict[str, list[str]] = {}
        for line in self.output.splitlines():
            found = _WORKER_LINE.match(line)
            if found:
                by_tag.setdefault(found.group("tag"), []).append(line)
        return "\n".join(line for tag in sorted(by_tag) for line in by_tag[tag][-lines:])

    def __str__(self) -> str:
        return f"torchrun job: {self.nproc} process(es), exit code {self.returncode}, {self.seconds:.1f} s wall"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (it may be taken again by the time you bind)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def loopback_interface() -> str:
    """The name of the loopback network interface ('lo' on Linux, 'lo0' on macOS), for GLOO_SOCKET_IFNAME.

    gloo listens on the address its host name resolves to unless told which interface to use; on a machine
    whose name resolves to a LAN address that would open ports to the network.
    """
    names = [name for _, name in socket.if_nameindex()]
    for name in ("lo", "lo0"):
        if name in names:
            return name
    loops = [n for n in names if n.startswith("lo")]
    if not loops:
        raise RuntimeError(f"no loopback interface among {names}")
    return loops[0]


def rank_file(out: str | os.PathLike[str], rank: int) -> Path:
    return Path(out) / RESULT_PATTERN.format(rank=rank)


def save_result(obj: Any, out: str | os.PathLike[str], rank: int | None = None) -> Path:
    """In a worker: save this rank's result (tensors, numbers, lists, dicts) where `collect` finds it."""
    if rank is None:
        import torch.distributed as dist

        rank = dist.get_rank()
    import torch

    path = rank_file(out, rank)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)  # a half-written file is never mistaken for a result
    return path


def collect(out: str | os.PathLike[str], world_size: int) -> list[Any]:
    """Every rank's saved result, in rank order; a missing rank is an error that names it."""
    import torch

    results = []
    for rank in range(world_size):
        path = rank_file(out, rank)
        if not path.exists():
            raise FileNotFoundError(f"rank {rank} saved no result ({path} is missing): did it call save_result?")
        results.append(torch.load(path, weights_only=True))
    return results


# --- the launching side ----------------------------------------------------------------------------------------


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux); empty where there is no /proc."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = entry.read_text().rsplit(")", 1)[1].split()
            tree.setdefault(int(fields[1]), []).append(int(entry.parent.name))
    return tree


def _descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM to the agent (torchrun passes it to its workers), then SIGKILL to whatever is still alive."""
    if proc.poll() is not None:
        return
    below = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=grace)
    for pid in [proc.pid, *below, *_descendants(proc.pid)]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def torchrun(
    script: str | os.PathLike[str],
    *args: Any,
    nproc: int = 2,
    threads: int = 1,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    check: bool = True,
) -> Run:
    """Run `script` in `nproc` processes with torchrun on 127.0.0.1; wait at most `timeout` seconds.

    Each worker gets `threads` torch/OpenMP threads (2 workers x 1 thread fill 2 cores: more would make
    them fight for the cores and every timing would measure that fight). The output of the agent and of
    every worker is captured, not printed; it is in the returned Run. With `check`, a job that fails raises
    DistributedRunError showing the first traceback a worker printed (the cause, where the agent's own
    traceback is only the consequence), and a job that times out is stopped and raises with its last lines.
    """
    if nproc < 1:
        raise ValueError(f"nproc must be at least 1, not {nproc}")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(128)
    port = int(sock.getsockname()[1])
    sock.set_inheritable(True)
    logs = Path(tempfile.mkdtemp(prefix="torchrun-logs-"))  # torchrun's per-rank log files; removed below
    flags = [
        "--nproc-per-node",
        str(nproc),
        "--master-addr",
        HOST,
        "--master-port",
        str(port),
        "--tee",
        "3",
        "--log-dir",
        str(logs),
    ]  # --tee 3: every worker line also goes to our pipe, prefixed [default<rank>]:
    command = [
        sys.executable, "-m", "course.foundations.distributed", "--listen-fd", str(sock.fileno()),
        "--parent-pid", str(os.getpid()), *flags, str(script), *[str(a) for a in args],
    ]  # fmt: skip
    child_env = {
        **os.environ,
        **(env or {}),
        "OMP_NUM_THREADS": str(threads),  # torchrun would set 1 and print a banner about it
        "COURSE_THREADS": str(threads),
        "GLOO_SOCKET_IFNAME": loopback_interface(),
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",  # a worker module rewritten twice in a second must not run stale bytecode
        "COURSE_PROGRESS": "0",
    }
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            command, env=child_env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL, pass_fds=(sock.fileno(),), start_new_session=True,
        )  # fmt: skip
    finally:
        sock.close()  # the agent has its own copy
    try:
        output, _ = proc.communicate(timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        _stop(proc)
        output, _ = proc.communicate()
        timed_out = True
    except BaseException:  # KeyboardInterrupt (a learner pressing stop) must not leave workers behind
        _stop(proc)
        raise
    finally:
        shutil.rmtree(logs, ignore_errors=True)
    run = Run(command, proc.returncode, output or "", time.perf_counter() - start, nproc, port)
    if check and timed_out:
        raise DistributedRunError(
            f"the job ran past {timeout:.0f} s and was stopped (a rank waiting forever in a collective that "
            f"another rank never reached looks like this). Last lines:\n{run.tail()}"
        )
    if check and run.returncode != 0:
        cause = run.first_traceback()
        if not cause:
            cause = (f"No worker printed a traceback. What each worker printed last:\n"
                     f"{run.worker_tails() or '(nothing)'}\nThe agent's last lines:\n{run.tail(15)}")  # fmt: skip
        else:
            cause = f"The first error a worker raised:\n{cause}"
        raise DistributedRunError(f"the job failed (exit code {run.returncode}). {cause}")
    return run


# --- the agent side: python -m course.foundations.distributed --------------------------------------------------


def _checked(argv: Sequence[str]) -> argparse.Namespace:
    """torchrun's own parsing of its flags, refusing those that would start a store beyond 127.0.0.1."""
    from torch.distributed import run as torch_run

    args = torch_run.parse_args(list(argv))
    if args.standalone or args.rdzv_backend != "static" or args.rdzv_endpoint:
        raise SystemExit(
            f"course.foundations.distributed runs torchrun's static rendezvous on {HOST} only: "
            "--standalone, --rdzv-backend and --rdzv-endpoint are for a cluster"
        )
    if args.master_addr != HOST:
        raise SystemExit(f"--master-addr must be {HOST} here, not {args.master_addr!r}")
    if args.master_port is None:  # torchrun would then switch to a c10d store on localhost:0, on every interface
        raise SystemExit("give --master-port (torchrun() picks a free one for you)")
    if args.nnodes not in ("1", "1:1"):
        raise SystemExit(f"one machine only: --nnodes must be 1, not {args.nnodes}")
    return args


def _serve_store_on_loopback(listen_fd: int | None) -> None:
    """Make torchrun's static rendezvous host its TCPStore on 127.0.0.1 only (torchrun binds every interface)."""
    import torch.distributed as dist
    from torch.distributed.elastic.rendezvous import static_tcp_rendezvous

    def store(
        host_name: str,
        port: int,
        world_size: int | None = None,
        is_master: bool = False,
        timeout: datetime.timedelta = datetime.timedelta(seconds=300),
        **kw: Any,
    ) -> dist.TCPStore:
        if not is_master:
            return dist.TCPStore(host_name, port, world_size, False, timeout, **kw)
        if listen_fd is not None:
            fd = listen_fd
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((HOST, port))
            sock.listen(128)
            fd = sock.detach()  # the store owns the descriptor from now on
        return dist.TCPStore(HOST, port, world_size, True, timeout, master_listen_fd=fd, **kw)

    static_tcp_rendezvous.TCPStore = store  # type: ignore[assignment]


def main(argv: list[str] | None = None) -> None:
    """`python -m course.foundations.distributed [--listen-fd N] [--parent-pid P] <torchrun flags> script [args]`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ours: dict[str, int] = {}
    while argv and argv[0] in ("--listen-fd", "--parent-pid"):  # only leading: later ones belong to the script
        ours[argv[0]] = int(argv[1])
        argv = argv[2:]
    args = _checked(argv)
    if "--parent-pid" in ours:
        threading.Thread(
            target=watch_parent, args=(ours["--parent-pid"], 15.0), name="parent-watchdog", daemon=True
        ).start()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", loopback_interface())
    _serve_store_on_loopback(ours.get("--listen-fd"))
    from torch.distributed import run as torch_run
    from torch.distributed.elastic.multiprocessing.errors import record

    record(torch_run.run)(args)


if __name__ == "__main__":
    main()
