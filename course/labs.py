"""The labs that exist, their budgets, and where each one's files are.

The course map (docs/course-map.md in the design notes) is the specification;
this registry holds the part the tools need. A lab's everything is found from its
id: `solutions/<id>/`, `labs/<id>/`, `tests/labs/test_<id with underscores>.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from course.paths import LABS, SOLUTIONS


@dataclass(frozen=True)
class Lab:
    id: str
    title: str
    budget_s: int  # wall time of the whole solution notebook on 2 CPU cores
    hours: float  # estimated learner time at 15 h/week

    @property
    def number(self) -> int:
        return int(self.id.split("-", 1)[0])

    def solution_notebooks(self, root: Path = SOLUTIONS) -> list[Path]:
        return sorted((root / self.id).glob("*.ipynb"))

    def release_notebooks(self, root: Path = LABS) -> list[Path]:
        return sorted((root / self.id).glob("*.ipynb"))


REGISTRY: tuple[Lab, ...] = (
    Lab("01-pytorch-fundamentals", "PyTorch fundamentals", budget_s=60, hours=6),
    Lab("02-mnist-classifier", "An MNIST classifier from scratch", budget_s=120, hours=10),
)

BY_ID = {lab.id: lab for lab in REGISTRY}


def resolve(names: list[str] | None) -> list[Lab]:
    """Labs named on the command line, by full id or number ('2', '02'); all when none."""
    if not names:
        return list(REGISTRY)
    chosen = []
    for name in names:
        matches = [
            lab
            for lab in REGISTRY
            if lab.id == name or (name.isdigit() and lab.number == int(name)) or lab.id.startswith(name + "-")
        ]
        if not matches:
            known = ", ".join(lab.id for lab in REGISTRY)
            raise SystemExit(f"Unknown lab {name!r}. Known labs: {known}.")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def lab_of(notebook: Path) -> Lab:
    """The lab a notebook belongs to, from its folder name."""
    lab_id = notebook.resolve().parent.name
    if lab_id not in BY_ID:
        raise SystemExit(f"{notebook} is not inside a lab folder (expected labs/NN-slug/...).")
    return BY_ID[lab_id]
