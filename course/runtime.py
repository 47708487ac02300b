"""The compute a notebook runs on: threads, device, seeds.

Two cores oversubscribe easily: a grader running two notebooks at once, each with
torch's default of one thread per core, spends its time context-switching. Every
notebook calls `setup()` first; the grader and the test suite say how many threads
each notebook may use through COURSE_THREADS.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    threads: int
    seed: int

    def __str__(self) -> str:
        return f"device={self.device.type}, torch threads={self.threads}, seed={self.seed}"


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and cgroup pinning)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_threads() -> int:
    env = os.environ.get("COURSE_THREADS")
    if env:
        return max(1, int(env))
    return cpu_count()


def pick_device(prefer: str = "auto") -> torch.device:
    """'auto' picks CUDA when present; 'cpu' and 'cuda' are taken literally."""
    if prefer == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("This profile asks for CUDA but torch sees no GPU; use the default CPU profile.")
    return torch.device(prefer)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def setup(seed: int = 0, device: str = "auto", threads: int | None = None) -> Runtime:
    """Seed every RNG, fix torch's thread count and choose the device."""
    n = threads or default_threads()
    torch.set_num_threads(n)
    seed_everything(seed)
    return Runtime(device=pick_device(device), threads=n, seed=seed)


def watch_parent(parent_pid: int, grace: float = 10.0) -> None:
    """Block until the process that started us is gone, then SIGTERM ourselves; hard exit if that hangs.

    Run in a daemon thread by helper processes (uvicorn servers, torchrun agents) that a
    notebook kernel starts, so a kernel that dies mid-lab leaves no orphan behind.
    """
    while os.getppid() == parent_pid:
        time.sleep(0.25)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(grace)
    os._exit(1)
