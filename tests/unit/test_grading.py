"""course.machinery.grading's own logic, without running nbgrader: prechecks and process limits."""

from __future__ import annotations

import os
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from course.machinery import grading

pytestmark = pytest.mark.unit


def _test(grade_id: str, source: str):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "points": 1,
        "grade_id": grade_id,
        "schema_version": 3,
    }
    return cell


@pytest.fixture()
def release(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    nbformat.write(
        new_notebook(cells=[_test("t1", "assert f() == 1"), _test("t2", "assert g() == 2")]), folder / "lab.ipynb"
    )
    return folder


def _submission(tmp_path, cells):
    folder = tmp_path / "sub"
    folder.mkdir(exist_ok=True)
    nbformat.write(new_notebook(cells=cells), folder / "lab.ipynb")
    return folder


def test_precheck_accepts_an_honest_submission(tmp_path, release):
    sub = _submission(
        tmp_path, [new_code_cell("def f(): return 1"), _test("t1", "assert f() == 1"), _test("t2", "assert g() == 2")]
    )
    assert grading.precheck(sub, release) == ([], True)


def test_precheck_names_deleted_and_edited_tests(tmp_path, release):
    sub = _submission(tmp_path, [_test("t1", "assert True")])
    problems, gradable = grading.precheck(sub, release)
    assert gradable
    assert any("'t1' was edited" in p for p in problems)
    assert any("'t2' was deleted" in p for p in problems)


def test_precheck_refuses_missing_and_broken_notebooks(tmp_path, release):
    empty = tmp_path / "empty"
    empty.mkdir()
    problems, gradable = grading.precheck(empty, release)
    assert not gradable and "lab.ipynb is missing" in problems[0]
    (empty / "lab.ipynb").write_text("{")
    problems, gradable = grading.precheck(empty, release)
    assert not gradable and "not valid JSON" in problems[0]


def test_run_group_kills_the_whole_process_group(tmp_path):
    """A runaway notebook kernel is a grandchild of the grading worker; it must die too."""
    marker = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time;"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']);"
        f"open({str(marker)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    start = time.perf_counter()
    code, _ = grading._run_group([sys.executable, "-c", script], dict(os.environ), limit=2)
    assert code is None and time.perf_counter() - start < 10
    child = int(marker.read_text())
    time.sleep(0.2)
    assert _gone_or_zombie(child), "the grandchild survived its grading worker"


def _gone_or_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_discover_finds_student_lab_pairs_and_skips_unknown_labs(tmp_path):
    base = tmp_path / grading.SUBMITTED
    (base / "alice" / "01-pytorch-fundamentals").mkdir(parents=True)
    (base / "bob" / "02-mnist-classifier").mkdir(parents=True)
    (base / "bob" / "not-a-lab").mkdir(parents=True)
    assert grading.discover(tmp_path) == [("alice", "01-pytorch-fundamentals"), ("bob", "02-mnist-classifier")]
    assert grading.discover(tmp_path, students=["bob"]) == [("bob", "02-mnist-classifier")]


def test_precheck_accepts_the_instructors_version_with_hidden_tests(tmp_path, release):
    source = tmp_path / "source"
    source.mkdir()
    with_hidden = "assert f() == 1\n### BEGIN HIDDEN TESTS\nassert f() != 0\n### END HIDDEN TESTS"
    nbformat.write(new_notebook(cells=[_test("t1", with_hidden), _test("t2", "assert g() == 2")]), source / "lab.ipynb")
    sub = _submission(tmp_path, [_test("t1", with_hidden), _test("t2", "assert g() == 2")])
    assert grading.precheck(sub, release, source) == ([], True)
    assert grading.precheck(sub, release)[0] == [
        "lab.ipynb: test cell 't1' was edited; the original test was restored for grading."
    ]
