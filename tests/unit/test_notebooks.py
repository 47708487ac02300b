"""course.machinery.notebooks: clear errors on broken files, nbgrader's rule for test cells."""

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from course.machinery import notebooks

pytestmark = pytest.mark.unit


def grade_cell(grade_id, outputs, points=2):
    cell = new_code_cell("assert True", outputs=outputs)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "points": points,
        "grade_id": grade_id,
        "schema_version": 3,
    }
    return cell


def test_load_explains_invalid_json(tmp_path):
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [ {"cell_type": "code",,')
    with pytest.raises(notebooks.NotebookError, match=r"not valid JSON \(line 1, column .*Revert to checkpoint"):
        notebooks.load(path)


def test_load_explains_json_that_is_not_a_notebook(tmp_path):
    path = tmp_path / "list.ipynb"
    path.write_text("[1, 2, 3]")
    with pytest.raises(notebooks.NotebookError, match="not a valid notebook"):
        notebooks.load(path)


def test_load_reports_a_missing_file(tmp_path):
    with pytest.raises(notebooks.NotebookError, match="does not exist"):
        notebooks.load(tmp_path / "nope.ipynb")


def test_grade_executed_uses_nbgraders_rule():
    nb = new_notebook(
        cells=[
            grade_cell("passes", [new_output("stream", name="stdout", text="ok\n")]),
            grade_cell(
                "raises", [new_output("error", ename="AssertionError", evalue="accuracy 0.5 < 0.9", traceback=[])]
            ),
            grade_cell("warns", [new_output("stream", name="stderr", text="UserWarning: careful\n")]),
            new_code_cell("x = 1"),
        ]
    )
    results = {r.grade_id: r for r in notebooks.grade_executed(nb)}
    assert set(results) == {"passes", "raises", "warns"}
    assert results["passes"].passed and results["passes"].points == 2
    assert results["raises"].points == 0 and results["raises"].error == "AssertionError: accuracy 0.5 < 0.9"
    assert results["warns"].points == 0 and "stderr" in results["warns"].error


def test_strip_outputs_leaves_sources_alone():
    nb = new_notebook(
        cells=[new_code_cell("print(1)", outputs=[new_output("stream", name="stdout", text="1")], execution_count=3)]
    )
    stripped = notebooks.strip_outputs(nb)
    assert stripped.cells[0].outputs == [] and stripped.cells[0].execution_count is None
    assert stripped.cells[0].source == "print(1)"
    nbformat.validate(stripped)
