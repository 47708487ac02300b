"""Milestones: the headline result of a lab, shown to the learner and recorded for machines.

`record()` is called from a read-only test cell. It displays a one-line verdict
and, in the same output, a JSON payload under our own MIME type, so `course run`
and `course check` read the result back from the executed notebook with no side
files: the notebook is the record.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

MIME = "application/vnd.mle-course.milestone+json"


@dataclass(frozen=True)
class Milestone:
    lab: str
    name: str
    measured: float
    bar: float
    higher_is_better: bool = True
    unit: str = ""

    @property
    def passed(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured >= self.bar if self.higher_is_better else self.measured <= self.bar

    def describe(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "reached" if self.passed else "not reached yet"
        return (
            f"Milestone {verdict}: {self.name} = {_fmt(self.measured, self.unit)} "
            f"(bar: {op} {_fmt(self.bar, self.unit)})"
        )


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.2f}%"
    return f"{value:.4g}{(' ' + unit) if unit else ''}"


def record(
    lab: str, name: str, measured: float, bar: float, *, higher_is_better: bool = True, unit: str = ""
) -> Milestone:
    """Show the milestone to the learner and leave a machine-readable copy in the output."""
    milestone = Milestone(lab, name, float(measured), float(bar), higher_is_better, unit)
    try:
        from IPython.display import display
    except ImportError:  # plain Python: printing is the best we can do
        print(milestone.describe())
    else:
        payload = {**asdict(milestone), "passed": milestone.passed}
        display({"text/plain": milestone.describe(), MIME: payload}, raw=True)
    return milestone


def read(cells: Iterable[Any], trusted: Callable[[Any], bool] | None = None) -> list[Milestone]:
    """Every milestone recorded in the outputs of an executed notebook's cells.

    `trusted` says which cells may record one: any cell can display our MIME type, so a
    reader that must not be fooled (a stub printing a fake record) accepts only the
    lab's own locked milestone cell.
    """
    found = []
    for cell in cells:
        if trusted is not None and not trusted(cell):
            continue
        for output in cell.get("outputs", []):
            payload = output.get("data", {}).get(MIME)
            if payload:
                fields = {k: payload[k] for k in ("lab", "name", "measured", "bar", "higher_is_better", "unit")}
                found.append(Milestone(**fields))
    return found
