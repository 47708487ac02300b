"""The machine line: what a time was measured on.

Two 2-core machines of the same kind ran the labs 2.5x apart (a Xeon with AVX-512, VNNI
and AMX at about 250 GFLOP/s of float32 matmul, an EPYC with AVX2 only at about 75), so a
time means little without its machine. `course run`, `course doctor` and the test suite
print this line beside every time they report.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from course.runtime import cpu_count

# The vector extensions that change how fast the labs run, in the order a reader compares them.
ISA_FLAGS = (("avx2", "AVX2"), ("avx512f", "AVX-512"), ("avx512_vnni", "VNNI"), ("amx_tile", "AMX"))


@dataclass(frozen=True)
class Machine:
    cpu: str
    cores: int
    isa: tuple[str, ...]
    gflops: float  # float32 matmul, best of a few, all cores
    gbps: float  # memory bandwidth of a large copy (bytes read + written per second)

    def line(self) -> str:
        isa = " ".join(self.isa) or "no AVX2"
        return (
            f"machine: {self.cpu}, {self.cores} cores, {isa}, "
            f"{self.gflops:.0f} GFLOP/s fp32 matmul, {self.gbps:.1f} GB/s memory"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self))


def cpu_model(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def vector_isa(cpuinfo: Path = Path("/proc/cpuinfo")) -> tuple[str, ...]:
    flags: set[str] = set()
    if cpuinfo.exists():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    return tuple(name for flag, name in ISA_FLAGS if flag in flags)


def matmul_gflops(n: int = 1024, seconds: float = 0.4) -> float:
    """Best float32 matmul rate over repeats filling `seconds`; the best, because noise only slows it down."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)  # warm-up: thread pool and caches
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - start) / 1e9)
    return best


def memory_gbps(megabytes: int = 256, repeats: int = 3) -> float:
    """Bandwidth of copying a buffer far larger than any cache (read + write)."""
    import numpy as np

    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = max(best, 2 * src.nbytes / (time.perf_counter() - start) / 1e9)
    return best


def measure() -> Machine:
    """About a second of measurement, with torch on every core this process may use."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(cpu_count())
    try:
        gflops = matmul_gflops()
    finally:
        torch.set_num_threads(before)
    return Machine(cpu_model(), cpu_count(), vector_isa(), gflops, memory_gbps())
