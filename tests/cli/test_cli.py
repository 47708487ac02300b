"""The `course` command as users type it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from course.paths import LABS, ROOT

pytestmark = pytest.mark.cli


def course(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "course.machinery.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_doctor_passes_on_a_set_up_machine():
    result = course("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch" in result.stdout and "mnist/train-images-idx3-ubyte.gz" in result.stdout


def test_data_verify():
    result = course("data", "verify")
    assert result.returncode == 0 and "match the manifest" in result.stdout


def test_run_prints_the_machine_line_and_the_scoreboard():
    """At the smoke profile: the suite executes every solution at the cpu profile once, elsewhere."""
    result = course("run", "01", "--profile", "smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    board = lines.index("Milestone scoreboard (profile: smoke)")
    assert lines[0].startswith("machine: ") and "GFLOP/s" in lines[0] and "GB/s" in lines[0], lines[0]
    assert lines[board + 1] == lines[0], "the scoreboard carries the machine line it was measured on"
    row = next(line for line in lines if line.startswith("01-pytorch-fundamentals"))
    assert " n/a " in row and "17/17" in row, row


def test_check_explains_an_untouched_notebook_in_plain_words():
    notebook = next((LABS / "01-pytorch-fundamentals").glob("*.ipynb"))
    result = course("check", str(notebook), "--profile", "smoke")
    assert result.returncode == 1
    assert "not done yet: replace `raise NotImplementedError()`" in result.stdout
    assert "Milestone: not measured yet" in result.stdout
    assert "Visible tests: 0/" in result.stdout


def test_check_refuses_a_broken_file_with_a_reason(tmp_path):
    lab_dir = tmp_path / "01-pytorch-fundamentals"
    lab_dir.mkdir()
    broken = lab_dir / "broken.ipynb"
    broken.write_text("{ not json")
    result = course("check", str(broken))
    assert result.returncode == 2
    assert "not valid JSON" in result.stderr


def test_unknown_lab_is_a_clear_error():
    result = course("run", "99")
    assert result.returncode != 0 and "Unknown lab '99'" in result.stderr
