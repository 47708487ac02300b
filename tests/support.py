"""Helpers for the grading tests: plausible wrong answers, and submissions made from notebooks."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from course.machinery.notebooks import nbgrader_meta


@dataclass(frozen=True)
class Mutant:
    """A plausible wrong answer: `old` in solution cell `cell` becomes `new`; `loses` must then fail."""

    description: str
    cell: str
    old: str
    new: str
    loses: list[str] = field(default_factory=list)


def student_of(index: int) -> str:
    """The student id under which a lab's index-th mutant is submitted."""
    return f"wrong{index:02d}"


def set_profile(nb: nbformat.NotebookNode, profile: str) -> None:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "a lab notebook has exactly one cell tagged `parameters`"
    cells[0].source = f'PROFILE = "{profile}"'


def apply(nb: nbformat.NotebookNode, mutant: Mutant) -> bool:
    """Apply the mutant if its cell is in this notebook; it must match exactly once."""
    for cell in nb.cells:
        if nbgrader_meta(cell).get("grade_id") == mutant.cell:
            count = cell.source.count(mutant.old)
            assert count == 1, f"{mutant.description}: `{mutant.old}` occurs {count} times in cell {mutant.cell}"
            cell.source = cell.source.replace(mutant.old, mutant.new)
            return True
    return False


def truncate_after(nb: nbformat.NotebookNode, grade_ids: set[str]) -> None:
    """Drop every cell after the last of `grade_ids`: it cannot change what those cells scored.

    A wrong answer is proven by the test cells it must lose; cells run top to bottom, so
    nothing after the last of them can change their outcome, and not running it is the
    largest saving in the suite. Notebooks without any of these cells are left whole.
    """
    positions = [i for i, cell in enumerate(nb.cells) if nbgrader_meta(cell).get("grade_id") in grade_ids]
    if positions:
        del nb.cells[max(positions) + 1 :]


def submit(
    notebooks: list[Path],
    dest: Path,
    profile: str | None = None,
    mutant: Mutant | None = None,
    until: set[str] | None = None,
) -> None:
    """Copy notebooks into a submission folder, optionally smoke-sized, mutated, and cut after `until`."""
    dest.mkdir(parents=True, exist_ok=True)
    applied = False
    for path in notebooks:
        if profile is None and mutant is None and until is None:
            shutil.copy(path, dest / path.name)
            continue
        nb = nbformat.read(path, as_version=4)
        if profile:
            set_profile(nb, profile)
        if mutant:
            applied |= apply(nb, mutant)
        if until:
            truncate_after(nb, until)
        nbformat.write(nb, dest / path.name)
    if mutant:
        assert applied, f"{mutant.description}: no cell '{mutant.cell}' in {[p.name for p in notebooks]}"
