"""Reading, parameterizing, executing and summarizing notebooks.

Executing is papermill's job (it injects parameters after the cell tagged
`parameters` and keeps going after errors when asked); judging a test cell is
nbgrader's (`determine_grade`), so a learner's `course check`, the maintainer's
`course run` and the instructor's `course grade` agree on what a pass is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
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
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise NotebookError(
            f"{path} is not UTF-8 text: byte {exc.start} (line {line}) is 0x{raw[exc.start]:02x}, which no notebook "
            "contains. It was probably edited or copied outside Jupyter. Open the last good copy in JupyterLab (File > "
            "Revert to checkpoint), or re-fetch the lab from labs/ and copy your work over."
        ) from exc
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
    except Exception as exc:  # nbformat raises ValidationError, AttributeError, KeyError... on odd JSON
        reason = getattr(exc, "message", None) or str(exc)
        raise NotebookError(
            f"{path} is JSON but not a valid notebook ({reason}). Re-fetch the lab from labs/ and copy your work over."
        ) from exc
    return nb


def nbgrader_meta(cell: dict[str, Any]) -> dict[str, Any]:
    return cell.get("metadata", {}).get("nbgrader", {})


def is_test_cell(cell: dict[str, Any]) -> bool:
    """An auto-graded test: graded, not a place for the learner's answer."""
    meta = nbgrader_meta(cell)
    return bool(meta.get("grade")) and not meta.get("solution") and cell.get("cell_type") == "code"


def locked_cell_judge(release: list[Path]) -> Callable[[dict[str, Any]], bool]:
    """A predicate: is this cell one of the release's locked cells, unedited, and did it run without an error?

    Only such a cell may speak for the lab (record its milestone): a learner's own cell can
    print anything.
    """
    locked = {}
    for path in release:
        for cell in load(path).cells:
            meta = nbgrader_meta(cell)
            if meta.get("locked") and meta.get("grade_id"):
                locked[meta["grade_id"]] = cell.source

    def judge(cell: dict[str, Any]) -> bool:
        grade_id = nbgrader_meta(cell).get("grade_id")
        errors = any(o.get("output_type") == "error" for o in cell.get("outputs", []))
        return grade_id in locked and cell.get("source") == locked[grade_id] and not errors

    return judge


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


def cell_label(cell: dict[str, Any]) -> str:
    """How a person finds the cell: its nbgrader id, or its first line."""
    grade_id = nbgrader_meta(cell).get("grade_id")
    if grade_id:
        return f"cell '{grade_id}'"
    first = next((line for line in cell.get("source", "").splitlines() if line.strip()), "")
    return f"the cell starting `{first[:60]}`"


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
) -> Execution:
    """Run a notebook top to bottom with papermill, keep going past errors, and grade it."""

    import papermill

    dst.parent.mkdir(parents=True, exist_ok=True)
    nb = load(src)  # fail early, with a readable message, on a broken file
    has_params = any("parameters" in c.metadata.get("tags", []) for c in nb.cells)
    start = time.perf_counter()
    try:
        papermill.execute_notebook(
            str(src),
            str(dst),
            parameters=(parameters or {}) if has_params else {},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(cwd or src.parent),
            execution_timeout=timeout_per_cell,
            # A failing test must not stop the run (later cells are graded too), and a
            # cell that runs past its time is interrupted rather than ending the run.
            allow_errors=True,
            interrupt_on_timeout=True,
            # The kernel's own start-up notices (ipykernel warns that its local TCP channels
            # are unencrypted) would be printed once per lab; errors still come through.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError:
        pass  # raised after the run when a cell failed; the executed notebook is written
    seconds = time.perf_counter() - start
    executed = nbformat.read(dst, as_version=4)
    failed = [
        f"{cell_label(c)}: {error_summary(c)}"
        for c in executed.cells
        if c.cell_type == "code" and not is_test_cell(c) and any(o.get("output_type") == "error" for o in c.outputs)
    ]
    return Execution(dst, seconds, grade_executed(executed), failed)
