"""The grades of every lab graded so far, kept so that nothing is lost and nothing is done twice.

nbgrader's gradebook holds the scores; this record holds what the gradebook does not:
each submission's status and the plain-words problems of its last grading, and a digest
of the files it was graded from. It is rewritten after every submission (atomically), so
a grader that crashes or is killed loses only what was in flight, and a rerun grades
only what is new or changed. grades.csv is written from the whole record, every lab.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from course.machinery.grading import Outcome

RECORD = "grading/results.json"
CSV = "grading/grades.csv"
FINAL = {"graded", "review", "invalid", "timeout"}  # statuses a rerun keeps; "error" is graded again
_lock = threading.Lock()


def digest(submission: Path) -> str:
    """sha256 over the names and bytes of every file of a submission."""
    h = hashlib.sha256()
    for path in sorted(p for p in submission.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(submission)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def load(root: Path) -> dict[str, dict[str, Any]]:
    path = root / RECORD
    return json.loads(path.read_text()) if path.exists() else {}


def _key(student: str, lab: str) -> str:
    return f"{student}/{lab}"


def record(root: Path, outcome: Outcome) -> None:
    """Add one graded submission to the record and rewrite grades.csv, both atomically."""
    from dataclasses import asdict

    with _lock:
        entries = load(root)
        entries[_key(outcome.student, outcome.lab)] = {**asdict(outcome), "cells": dict(outcome.cells)}
        _write_atomically(root / RECORD, json.dumps(entries, indent=1, sort_keys=True))
        _write_atomically(root / CSV, _csv(entries))


def unchanged(root: Path, pairs: list[tuple[str, str]]) -> dict[tuple[str, str], Outcome]:
    """Submissions graded before, from exactly the files there now, with a final status: not graded again."""
    from course.machinery.grading import Outcome

    entries, kept = load(root), {}
    for student, lab in pairs:
        entry = entries.get(_key(student, lab))
        submission = root / "grading" / "submitted" / student / lab
        if entry and entry["status"] in FINAL and entry["digest"] == digest(submission):
            fields = {**entry, "cells": {k: tuple(v) for k, v in entry["cells"].items()}}
            outcome = Outcome(**fields)
            outcome.problems = [*outcome.problems, "unchanged since it was last graded: that grade is kept"]
            kept[(student, lab)] = outcome
    return kept


def _csv(entries: dict[str, dict[str, Any]]) -> str:
    lines = [["student", "lab", "score", "max_score", "status", "seconds", "problems"]]
    for key in sorted(entries):
        e = entries[key]
        lines.append(
            [e["student"], e["lab"], f"{e['score']:g}", f"{e['max_score']:g}", e["status"], f"{e['seconds']:.1f}",
             " ".join(e["problems"])]
        )  # fmt: skip
    with tempfile.SpooledTemporaryFile(mode="w+", newline="") as buffer:
        csv.writer(buffer).writerows(lines)
        buffer.seek(0)
        return buffer.read()


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", newline="") as fh:
        fh.write(text)
    os.replace(tmp, path)
