"""Where things live. Every path is derived from the repository root, so the CLI
works from any working directory inside a clone."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The clone the package was installed from (editable install) or COURSE_ROOT."""
    env = os.environ.get("COURSE_ROOT")
    if env:
        return Path(env).resolve()
    return Path(__file__).resolve().parent.parent


ROOT = repo_root()
DATASETS = ROOT / "datasets"
MANIFEST = DATASETS / "MANIFEST.tsv"
SOLUTIONS = ROOT / "solutions"
LABS = ROOT / "labs"
GRADING = ROOT / "grading"
BUILD = ROOT / "build"
DOCS = ROOT / "docs"
COURSE_MAP = DOCS / "course-map.md"
