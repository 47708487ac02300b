"""`course check`: run a learner's notebook and explain the result in plain words.

The learner's file is never modified: it is executed into build/check/, and the
report lists each visible test with what went wrong, the cells that crashed, and
the milestone. Hidden tests are not in the learner's copy; they run when the
instructor grades.
"""

from __future__ import annotations

from pathlib import Path

import nbformat

from course import milestones
from course.machinery import notebooks
from course.machinery.labs import lab_of
from course.paths import BUILD


def explain(error: str) -> str:
    """Turn the last line of a traceback into advice a learner can act on."""
    if error.startswith("NotImplementedError"):
        return "not done yet: replace `raise NotImplementedError()` with your code."
    if error.startswith("NameError"):
        return f"{error} -- a name from an earlier cell is missing; that cell failed or was not run."
    if error.startswith("AssertionError"):
        message = error.removeprefix("AssertionError:").strip()
        return message or "an assert failed (the test gives no message; read the test cell)."
    if error.startswith("CellTimeoutError") or "KeyboardInterrupt" in error:
        return "the cell ran too long and was stopped: look for a loop that never ends."
    return error


def check(
    path: Path, profile: str = "cpu", out: Path = BUILD / "check", timeout_per_cell: int = 600
) -> tuple[bool, str]:
    lab = lab_of(path)
    dst = out / lab.id / path.name
    execution = notebooks.execute(path, dst, {"PROFILE": profile}, cwd=path.parent, timeout_per_cell=timeout_per_cell)
    executed = nbformat.read(dst, as_version=4)
    lines = [f"Checked {path} ({lab.title}) in {execution.seconds:.0f} s, profile {profile}.", ""]
    for r in execution.results:
        mark = "PASS" if r.passed else "FAIL"
        lines.append(f"  [{mark}] {r.grade_id} ({r.max_points:g} pt)" + ("" if r.passed else f": {explain(r.error)}"))
    for cell in execution.failed_cells:
        lines.append(f"  [ERR ] {cell} -- tests that use its results fail too.")
    found = milestones.read(executed.cells, trusted=notebooks.locked_cell_judge(lab.release_notebooks()))
    lines.append("")
    if found:
        lines.append(found[0].describe())
    else:
        lines.append("Milestone: not measured yet (its test cell did not get that far).")
    passed = sum(r.passed for r in execution.results)
    lines.append(
        f"Visible tests: {passed}/{len(execution.results)} passing, "
        f"{execution.score:g}/{execution.max_score:g} points. Hidden tests run when your work is graded."
    )
    lines.append(f"Executed copy with all outputs: {dst}")
    ok = passed == len(execution.results) and not execution.failed_cells
    return ok, "\n".join(lines)
