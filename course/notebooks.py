"""Reading, parameterizing, executing and summarizing notebooks.

Executing is papermill's job (it injects parameters after the cell tagged
`parameters` and keeps going after errors when asked); judging a test cell is
nbgrader's (`determine_grade`), so a learner's `course check`, the maintainer's
`course run` and the instructor's `course grade` agree on what a pass is.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode


class NotebookError(RuntimeError):
    """A notebook file cannot be used; the message says why and what to do."""


def load(path: Path) -> NotebookNode:
    """Read a notebook, turning JSON and schema problems into a plain explanation."""
    if not path.exists():
        raise NotebookError(f"{path} does not exist.")
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        raise NotebookError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            "It was probably edited outside Jupyter or saved half-way. Open the last good copy "
            "in JupyterLab (File > Revert to checkpoint) or re-fetch the lab from labs/."
        ) from exc
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise NotebookError(f"{path} is JSON but not a valid notebook: {exc.message}.") from exc
    return nb


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: dict[str, Any]) -> bool:
    """An auto-graded test: graded, not a place for the learner's answer."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def strip_outputs(nb: NotebookNode) -> NotebookNode:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nb.metadata.pop("papermill", None)
    return nb


@dataclass
class CellResult:
    grade_id: str
    points: float
    max_points: float
    error: str = ""  # "AssertionError: accuracy 0.81 is below 0.90" for a failed test

    @property
    def passed(self) -> bool:
        return self.points >= self.max_points


@dataclass
class Execution:
    path: Path
    seconds: float
    results: list[CellResult] = field(default_factory=list)
    failed_cells: list[str] = field(default_factory=list)  # non-test cells that raised
    timed_out: bool = False

    @property
    def score(self) -> float:
        return sum(r.points for r in self.results)

    @property
    def max_score(self) -> float:
        return sum(r.max_points for r in self.results)


def error_summary(cell: dict[str, Any]) -> str:
    """The last line a learner would read: the exception name and message, or stderr."""
    for output in cell.get("outputs", []):
        if output.get("output_type") == "error":
            return f"{output.get('ename')}: {output.get('evalue')}".strip()
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stderr":
            return "wrote to stderr: " + "".join(output.get("text", "")).strip()[-300:]
    return ""


def grade_executed(nb: NotebookNode) -> list[CellResult]:
    """Score each test cell of an already-executed notebook with nbgrader's own rule."""
    from nbgrader.utils import determine_grade

    results = []
    for cell in nb.cells:
        if not is_test_cell(cell):
            continue
        points, max_points = determine_grade(cell)
        results.append(
            CellResult(
                nbgrader_meta(cell).get("grade_id", "?"), float(points or 0.0), float(max_points), error_summary(cell)
            )
        )
    return results


def execute(
    src: Path,
    dst: Path,
    parameters: dict[str, Any] | None = None,
    *,
    timeout_per_cell: int = 600,
    cwd: Path | None = None,
    env_threads: int | None = None,
) -> Execution:
    """Run a notebook top to bottom with papermill, keep going past errors, and grade it."""
    import os

    import papermill

    dst.parent.mkdir(parents=True, exist_ok=True)
    nb = load(src)  # fail early, with a readable message, on a broken file
    if env_threads:
        os.environ["COURSE_THREADS"] = str(env_threads)
    has_params = any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    start = time.perf_counter()
    timed_out = False
    try:
        papermill.execute_notebook(
            str(src),
            str(dst),
            parameters=(parameters or {}) if has_params else {},
            kernel_name="python3",
            progress_bar=False,
            request_save_on_cell_execute=False,
            cwd=str(cwd or src.parent),
            execution_timeout=timeout_per_cell,
            # a failing test must not stop the run: later cells are graded too
            **{"allow_errors": True},
        )
    except Exception as exc:  # papermill raises on dead kernels and timeouts
        timed_out = "Timeout" in type(exc).__name__ or "timed out" in str(exc).lower()
        if not dst.exists():
            raise
    seconds = time.perf_counter() - start
    executed = nbformat.read(dst, as_version=4)
    failed = [
        nbgrader_meta(c).get("grade_id") or f"cell {i}"
        for i, c in enumerate(executed.cells)
        if c.cell_type == "code"
        and not is_test_cell(c)
        and any(o.get("output_type") == "error" for o in c.get("outputs", []))
    ]
    return Execution(dst, seconds, grade_executed(executed), failed, timed_out)
