"""course.machinery.machine: the line that says what a time was measured on."""

from __future__ import annotations

import pytest

from course.machinery import machine

pytestmark = pytest.mark.unit

XEON = "model name\t: Intel(R) Xeon(R) Processor\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_tile sse4_2\n"
EPYC = "model name\t: AMD EPYC 7B13\nflags\t\t: fpu avx avx2 fma\n"


@pytest.mark.parametrize(
    ("cpuinfo", "model", "isa"),
    [(XEON, "Intel(R) Xeon(R) Processor", ("AVX2", "AVX-512", "VNNI", "AMX")), (EPYC, "AMD EPYC 7B13", ("AVX2",))],
)
def test_cpu_model_and_vector_isa_are_read_from_cpuinfo(tmp_path, cpuinfo, model, isa):
    path = tmp_path / "cpuinfo"
    path.write_text(cpuinfo)
    assert machine.cpu_model(path) == model
    assert machine.vector_isa(path) == isa


def test_the_line_names_everything_a_reader_compares():
    line = machine.Machine("AMD EPYC 7B13", 2, ("AVX2",), 75.6, 9.8).line()
    assert line == "machine: AMD EPYC 7B13, 2 cores, AVX2, 76 GFLOP/s fp32 matmul, 9.8 GB/s memory"


def test_measurements_are_positive_and_plausible():
    assert 1 < machine.matmul_gflops(n=256, seconds=0.05) < 100_000
    assert 0.1 < machine.memory_gbps(megabytes=16, repeats=1) < 10_000
