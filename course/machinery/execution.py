"""Executing a notebook whose code we do not trust: the kernel in the sandbox, the client here.

The grader's side of the conversation (nbclient, in this process, outside the sandbox)
is the only witness we trust. Besides the outputs it records for every cell what the
kernel *replied* (ok or error), because a kernel can hide an error from the outputs
(a custom exception handler, a patched traceback printer) but its reply to the request
still says error. After each test cell it sends a probe that must fail with a secret
only this process knows: a kernel that rewrites or swallows what it is sent (an input or
AST transformer, a patched `run_cell`) answers the probe wrongly and is reported.
A test cell that never ran (the kernel died or exited) gets an error output, so it
scores 0 instead of nbgrader's full marks for a cell without outputs.

Run as `python -m course.machinery.execution` by the grader, in a process group it can
kill at the wall-clock limit; nothing the kernel starts outlives the sandbox.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient
from nbclient.exceptions import DeadKernelError
from nbformat import NotebookNode

from course.machinery import sandbox
from course.machinery.notebooks import cell_label, is_test_cell


@dataclass
class Report:
    """What the trusted side saw. Lists hold cell labels a person can find."""

    seconds: float = 0.0
    replied_error: list[str] = field(default_factory=list)  # test cells whose reply was an error
    hidden_errors: list[str] = field(default_factory=list)  # ... and whose outputs showed none
    probes_failed: list[str] = field(default_factory=list)  # test cells after which the probe came back wrong
    not_run: list[str] = field(default_factory=list)  # cells never executed (the kernel was gone)
    timed_out: list[str] = field(default_factory=list)  # cells interrupted at the cell time limit
    memory_errors: list[str] = field(default_factory=list)  # cells that ran out of memory and went on
    stopped_at: str = ""  # the cell in which the kernel died or exited; "" when it ran to the end
    limit_hit: str = ""  # "more than its 4 GiB of memory", when a limit is why it stopped
    peak_memory_gib: float | None = None
    sandboxed: bool = True

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls(**json.loads(text))


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels start inside `sandbox.command`, talking over Unix sockets."""

    def configure(self, channels: Path, limits: sandbox.Limits, threads: int, uid: int, prefix: list[str]) -> None:
        self._channels, self._limits, self._threads, self._uid, self._prefix = channels, limits, threads, uid, prefix

    def format_kernel_cmd(self, extra_arguments: list[str] | None = None) -> list[str]:
        # A signal to the kernel's process group would reach bubblewrap too, which dies of it and takes the
        # kernel along; asked by message, the kernel interrupts itself.
        self.kernel_spec.interrupt_mode = "message"
        argv = super().format_kernel_cmd(extra_arguments)
        for path in (self._channels, Path(self.connection_file)):
            sandbox.give(path, self._uid)
        return [*self._prefix, *sandbox.command(argv, self._channels, self._limits, self._threads, self._uid)]


def _error_output(name: str, message: str) -> NotebookNode:
    return nbformat.v4.new_output("error", ename=name, evalue=message, traceback=[f"{name}: {message}"])


class _Run:
    """One execution: the client, the report, and the bookkeeping between cells."""

    def __init__(self, nb: NotebookNode, km: AsyncKernelManager, cell_timeout: int, report: Report) -> None:
        self.nb, self.report, self.replies = nb, report, {}
        self.client = NotebookClient(
            nb,
            km=km,
            timeout=cell_timeout,
            allow_errors=True,
            interrupt_on_timeout=True,
            kernel_name="python3",
            record_timing=False,
            on_cell_executed=self._replied,
        )

    def _replied(self, cell: NotebookNode, cell_index: int, execute_reply: dict) -> None:
        self.replies[cell_index] = execute_reply.get("content", {}).get("status", "?")

    async def probe(self) -> bool:
        """A request that must fail with our secret, seen as such both in the reply and in the outputs."""
        secret = secrets.token_hex(8)
        cell = nbformat.v4.new_code_cell(f"raise AssertionError({secret!r})")
        status: list[str] = []
        self.client.on_cell_executed = lambda cell, cell_index, execute_reply: status.append(
            execute_reply.get("content", {}).get("status", "?")
        )
        self.nb.cells.append(cell)  # nbclient writes outputs by index: a cell of its own, removed at once
        try:
            await self.client.async_execute_cell(cell, len(self.nb.cells) - 1, store_history=False)
        finally:
            self.nb.cells.pop()
            self.client.on_cell_executed = self._replied
        shown = any(o.get("output_type") == "error" and secret in str(o.get("evalue")) for o in cell.outputs)
        return status == ["error"] and shown

    async def cells(self) -> None:
        for index, cell in enumerate(self.nb.cells):
            if cell.cell_type != "code":
                continue
            try:
                await self.client.async_execute_cell(cell, index)
            except DeadKernelError:
                self._gone(index)
                return
            except Exception as exc:  # a timeout that could not interrupt, a protocol error: the cell failed
                cell.outputs.append(_error_output(type(exc).__name__, str(exc)[:300]))
                self.report.timed_out.append(cell_label(cell))
            else:
                names = {o.get("ename") for o in cell.outputs if o.get("output_type") == "error"}
                if "KeyboardInterrupt" in names:  # interrupted at its time limit
                    self.report.timed_out.append(cell_label(cell))
                if "MemoryError" in names:
                    self.report.memory_errors.append(cell_label(cell))
            if is_test_cell(cell):
                self._judge(index, cell)
                try:
                    if not await self.probe():
                        self.report.probes_failed.append(cell_label(cell))
                except DeadKernelError:
                    self._gone(index + 1)
                    return

    def _judge(self, index: int, cell: NotebookNode) -> None:
        if self.replies.get(index) != "error":
            return
        self.report.replied_error.append(cell_label(cell))
        if not any(o.get("output_type") == "error" for o in cell.outputs):
            self.report.hidden_errors.append(cell_label(cell))
            cell.outputs.append(_error_output("HiddenError", "the kernel replied error, but no error was shown"))

    def _gone(self, index: int) -> None:
        """The kernel died or exited in cell `index`: it and every later code cell say so, and score 0."""
        for cell in self.nb.cells[index:]:
            if cell.cell_type == "code":
                self.report.not_run.append(cell_label(cell))
                cell.outputs = [_error_output("NotRun", "the kernel was gone before this cell finished")]
        self.report.stopped_at = cell_label(self.nb.cells[index]) if index < len(self.nb.cells) else "the end"


def _kernel_manager(
    channels: Path, limits: sandbox.Limits, threads: int, uid: int, memory: sandbox.MemoryGroup | None, sandboxed: bool
) -> AsyncKernelManager:
    if sandboxed:
        km = SandboxedKernelManager(kernel_name="python3", transport="ipc", ip=str(channels / "k"))
        km.configure(channels, limits, threads, uid, memory.join_command() if memory else [])
    else:
        km = AsyncKernelManager(kernel_name="python3")
    km.connection_file = str(channels / "kernel.json")
    return km


async def _execute(nb: NotebookNode, km: AsyncKernelManager, cell_timeout: int, report: Report, log) -> None:
    run = _Run(nb, km, cell_timeout, report)
    async with run.client.async_setup_kernel(stdout=log, stderr=log):
        await run.cells()


def execute(
    src: Path,
    dst: Path,
    *,
    limits: sandbox.Limits,
    cell_timeout: int,
    threads: int = 1,
    sandboxed: bool = True,
) -> Report:
    """Run `src` top to bottom and write the executed notebook to `dst`; the report says what was seen."""
    if not sandboxed:
        return _execute_as(src, dst, limits, cell_timeout, threads, os.geteuid(), sandboxed=False)
    with sandbox.claimed_uid() as uid:
        sandbox.reap(uid)  # whatever an earlier kernel under this uid left
        try:
            return _execute_as(src, dst, limits, cell_timeout, threads, uid, sandboxed=True)
        finally:
            sandbox.reap(uid)  # nothing it started outlives its grading


def _execute_as(
    src: Path, dst: Path, limits: sandbox.Limits, cell_timeout: int, threads: int, uid: int, sandboxed: bool
) -> Report:
    nb, report = nbformat.read(src, as_version=4), Report(sandboxed=sandboxed)
    start = time.perf_counter()
    memory = sandbox.MemoryGroup.create(int(limits.memory_gib * 2**30)) if sandboxed else None
    tail = ""
    for attempt in (1, 2):  # a kernel that dies before it ever answered is our problem, not the student's
        with tempfile.TemporaryDirectory(prefix="kernel-") as tmp:
            channels = Path(tmp)
            km = _kernel_manager(channels, limits, threads, uid, memory, sandboxed)
            with (channels / "kernel.log").open("w") as log:
                try:
                    asyncio.run(_execute(nb, km, cell_timeout, report, log))
                except RuntimeError as exc:
                    tail = (channels / "kernel.log").read_text(errors="replace")[-1500:]
                    if "kernel_info" not in str(exc) or attempt == 2:
                        raise RuntimeError(f"{exc}; the kernel's last words: {tail}") from exc
                    nb, report = nbformat.read(src, as_version=4), Report(sandboxed=sandboxed)
                    if sandboxed:
                        sandbox.reap(uid)
                    continue
            tail = (channels / "kernel.log").read_text(errors="replace")[-2000:]
        break
    report.seconds = time.perf_counter() - start
    if memory is not None:
        report.peak_memory_gib = memory.peak_bytes() / 2**30
        if memory.hit_limit():
            report.limit_hit = f"more than its {limits.memory_gib:g} GiB of memory"
        memory.remove()
    if report.stopped_at and not report.limit_hit and "CPU time limit" in tail:
        report.limit_hit = f"more than {limits.cpu_s} s of CPU"
    nbformat.write(nb, dst)
    return report


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course.machinery.execution")
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    parser.add_argument("--report", type=Path, required=True)
    parser.add_argument("--limits", default="{}", help="JSON of sandbox.Limits fields")
    parser.add_argument("--cell-timeout", type=int, default=300)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--unsandboxed", action="store_true")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a killed grader still cleans up its kernel
    report = execute(
        args.src,
        args.dst,
        limits=sandbox.Limits(**json.loads(args.limits)),
        cell_timeout=args.cell_timeout,
        threads=args.threads,
        sandboxed=not args.unsandboxed,
    )
    args.report.write_text(report.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
